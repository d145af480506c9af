"""Helpers shared by bench/encode and bench/stsb: paths, texts, sbert-encode as a subprocess,
the sentence-transformers model, cosine checks, and the ONNX export of the same weights."""

import gzip
import hashlib
import os
import random
import resource
import subprocess
import time
import warnings

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
DEFAULT_SHARED = os.path.join(os.path.dirname(ROOT), "shared")
OUT_DIR = os.path.join(ROOT, "bench", "out")


def shared_file(shared_dir, *parts):
    """Returns the path of a file under shared/data, or exits with a clear message."""
    path = os.path.join(shared_dir, "data", *parts)
    if not os.path.isfile(path):
        raise SystemExit(f"bench: shared data file missing: {path} (pass --shared DIR)")
    return path


def load_sentences(shared_dir, n, seed):
    """n Tatoeba sentences, shuffled with a fixed seed (the file is sorted short to long)."""
    path = shared_file(shared_dir, "corpus", "tatoeba_en_sentences.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    lines = [s for s in lines if s]
    random.Random(seed).shuffle(lines)
    if n > len(lines):
        raise SystemExit(f"bench: asked for {n} sentences, {path} has {len(lines)}")
    return lines[:n]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_dim(model_dir):
    import json

    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)["hidden_size"]


class EncodeRun:
    """One sbert-encode process: embeddings, wall seconds, CPU seconds, stderr."""

    def __init__(self, emb, wall, cpu, stderr):
        self.emb, self.wall, self.cpu, self.stderr = emb, wall, cpu, stderr


def run_sbert_encode(binary, model_dir, texts, batch, threads, stats=False, env=None,
                     extra_args=()):
    """Runs `sbert-encode --format f32` on texts (one per line); raises RuntimeError on failure.
    wall is the whole process (start-up, model load, I/O); cpu is the child's user+sys seconds,
    so cpu/wall shows how many cores it kept busy."""
    if any("\n" in t for t in texts):
        raise ValueError("a text contains a newline; sbert-encode reads one text per line")
    cmd = [binary, "--model", model_dir, "--format", "f32", "--batch", str(batch),
           "--threads", str(threads)]
    if stats:
        cmd.append("--stats")
    cmd.extend(extra_args)
    data = "".join(t + "\n" for t in texts).encode("utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=data, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()}")
    dim = model_dim(model_dir)
    emb = np.frombuffer(proc.stdout, dtype="<f4")
    if emb.size != len(texts) * dim:
        raise RuntimeError(f"sbert-encode wrote {emb.size} floats for {len(texts)} texts "
                           f"of dimension {dim}")
    return EncodeRun(emb.reshape(len(texts), dim).copy(), wall, cpu, err)


def load_st(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu")


def cosines(a, b):
    """Row-wise cosine similarity of two (n, d) arrays, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def onnx_export(model_dir, out_dir):
    """Exports the model's BertModel plus mean pooling and L2 normalisation (the
    sentence-transformers modules of all-MiniLM-L6-v2) to an fp32 ONNX file with dynamic batch and
    sequence axes. Cached under out_dir by the weights' sha256. Returns the .onnx path."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    sha = sha256_file(os.path.join(model_dir, "model.safetensors"))
    path = os.path.join(out_dir, f"minilm-{sha[:16]}.onnx")
    if os.path.isfile(path):
        return path
    os.makedirs(out_dir, exist_ok=True)

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    # Eager attention: the SDPA path traces into ops the TorchScript exporter handles less well.
    bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    sample = tok(["a short one", "a somewhat longer sample sentence for tracing"], padding=True,
                 return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {k: {0: "batch", 1: "seq"} for k in names}
    axes["sentence_embedding"] = {0: "batch"}
    tmp = path + ".tmp"
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python-side shape checks in transformers' mask code; the export is
        # checked against sentence-transformers on every benchmark run instead.
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter, which needs no onnxscript package.
        torch.onnx.export(Pooled(bert).eval(), tuple(sample[k] for k in names), tmp,
                          dynamo=False, input_names=names, output_names=["sentence_embedding"],
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True)
    os.replace(tmp, path)
    return path
