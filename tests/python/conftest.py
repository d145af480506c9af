"""Fixtures for the Python package's tests (issue 15): the built binaries and library, the model,
the shared data, and a real sbertd on a temporary directory (tests/daemon/sbertd_harness.py).

ctest (tests/python/CMakeLists.txt) passes the paths in the environment: SBERTD, SBERTCTL,
SBERT_ENCODE, SBERTD_LIBRARY, SBERT_MODEL_DIR, SBERT_SHARED_DIR.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
import sbertd_harness as harness  # noqa: E402


def env_path(name):
    v = os.environ.get(name)
    assert v and os.path.exists(v), "%s must name an existing path (ctest sets it), got %r" % (
        name, v)
    return v


@pytest.fixture(scope="session")
def model_dir():
    return env_path("SBERT_MODEL_DIR")


@pytest.fixture(scope="session")
def shared_dir():
    return env_path("SBERT_SHARED_DIR")


@pytest.fixture(scope="session")
def sbertctl():
    return env_path("SBERTCTL")


@pytest.fixture(scope="session")
def sbert_encode():
    return env_path("SBERT_ENCODE")


@pytest.fixture(scope="session")
def golden_dir():
    return os.path.join(ROOT, "tests", "golden")


def start_daemon(model_dir, extra=(), config=None):
    env_path("SBERTD")
    return harness.Daemon(model_dir, extra=extra, config=config).start()


@pytest.fixture
def daemon(model_dir):
    """A fresh sbertd for one test."""
    d = start_daemon(model_dir)
    yield d
    rc = d.stop()
    d.cleanup()
    assert rc == 0, "sbertd exit status %r" % rc


@pytest.fixture(scope="module")
def shared_daemon(model_dir):
    """One sbertd for a module's tests that do not depend on each other's documents."""
    d = start_daemon(model_dir)
    yield d
    rc = d.stop()
    d.cleanup()
    assert rc == 0, "sbertd exit status %r" % rc
