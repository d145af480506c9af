"""sbertd: the Python client of the sbertd semantic search daemon, its C encoder as a library
(Encoder), and a LangChain vector store (sbertd.langchain.SbertdVectorStore)."""
from .client import Client, Document, Hit, Passage, resolve_endpoint
from .errors import *  # noqa: F401,F403
from .errors import SbertdError, UnsupportedOperation, Timeout, Unreachable, BY_CODE
from .encoder import Encoder

__version__ = "0.1.0"
__all__ = ["Client", "Document", "Hit", "Passage", "Encoder", "resolve_endpoint", "SbertdError",
           "UnsupportedOperation", "Timeout", "Unreachable", "BY_CODE"]
