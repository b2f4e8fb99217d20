"""What every runtime offers: an `Embedder`, and the metadata an exported file carries.

An exported file (ONNX or TorchScript) carries `spkverif.json`, the metadata of the
model it was exported from, and, since the seal was introduced, `spkverif.seal`: the
sha256 of that metadata's text together with a digest of the network the file really
runs (`seal`; the ONNX model's fields other than its metadata, the TorchScript
archive's code, constants and tensors). When a file is opened, its metadata is checked
against its network: the embedding size the network outputs must be the metadata's
(`check_embedding_dim`), and a sealed file's seal must match (`check_seal`), so
metadata copied from another model, or edited, is refused with one line, and with it a
calibration tied to the fingerprint it names. A file exported before the seal has none
and opens as it did (its embedding size is still checked).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.io.tables import parse_json

METADATA_NAME = "spkverif.json"
SEAL_NAME = "spkverif.seal"
_SEAL_VERSION = b"spkverif-seal 1\n"
# Length of the silent input an exported network without a declared output size runs on when opened.
PROBE_SECONDS = 0.5


DEVICE = "auto"
"""Where a network runs unless told (`--device`): `auto` is the GPU where there is one, else the CPU."""


class Embedder(ABC):
    """A network ready to run: waveforms (B, T) float32 in [-1, 1] in, embeddings (B, D) float32 out.

    `metadata` holds the model's name and options (`model`), `sample_rate` (Hz),
    `embedding_dim` (D), `min_samples` (shortest input it accepts, in samples) and
    `fingerprint` (a hash of name, options and weights; see
    `spkverif.models.files.model_fingerprint`). An exported file's metadata was
    checked against the network it holds when it was opened (module doc): a
    calibration made for `fingerprint` is one made for the network that runs.
    """

    def __init__(self, metadata: dict[str, Any], kind: str):
        self.metadata = metadata
        self.kind = kind

    @property
    def sample_rate(self) -> int:
        return int(self.metadata["sample_rate"])

    @property
    def embedding_dim(self) -> int:
        return int(self.metadata["embedding_dim"])

    @property
    def min_samples(self) -> int:
        return int(self.metadata["min_samples"])

    @property
    def fingerprint(self) -> str:
        return str(self.metadata.get("fingerprint", ""))

    @abstractmethod
    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """Embeddings (B, D) float32 of waveforms (B, T) float32, every row at least `min_samples` long."""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# Each metadata key, what it must be, and the check.
METADATA_CHECKS: dict[str, tuple[str, Any]] = {
    "model": ("the network's name and options", lambda value: isinstance(value, dict)),
    "sample_rate": ("a positive whole number of Hz", _whole),
    "embedding_dim": ("a positive whole number", _whole),
    "min_samples": ("a positive whole number", _whole),
    "fingerprint": ("a string", lambda value: isinstance(value, str)),
}
METADATA_KEYS = tuple(METADATA_CHECKS)


def parse_metadata(text: str | None, path: str | Path) -> dict[str, Any]:
    """The metadata an exported file carries, checked for every key; one-line errors otherwise."""
    if not text:
        raise SpkverifError(f"no {METADATA_NAME} metadata: not a model exported by `spkverif export`", path)
    metadata = parse_json(text, f"{METADATA_NAME} metadata", path)
    if not isinstance(metadata, dict):
        raise SpkverifError(f"{METADATA_NAME} metadata is not a JSON object", path)
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise SpkverifError(f"{METADATA_NAME} metadata lacks {', '.join(missing)}", path)
    for key, (what, valid) in METADATA_CHECKS.items():
        if not valid(metadata[key]):
            raise SpkverifError(f"{METADATA_NAME} metadata: {key} must be {what}, not {metadata[key]!r}", path)
    return metadata


def seal(metadata_text: str, graph_digest: str) -> str:
    """An exported file's `spkverif.seal`: sha256 (hex) of the metadata's text, as stored, and of
    `graph_digest`, the digest of the network the file runs (each runtime's own)."""
    return hashlib.sha256(_SEAL_VERSION + graph_digest.encode() + b"\n" + metadata_text.encode()).hexdigest()


def check_seal(path: str | Path, metadata_text: str, stored: str, graph_digest: Callable[[], str]) -> None:
    """Refuse a file whose `spkverif.seal` is not the seal of its metadata and its network.

    `stored` is the file's seal ('' for a file exported before seals: nothing to check);
    `graph_digest` computes the network's digest (called only for a sealed file).
    Raises `SpkverifError` naming the file.
    """
    if not stored:
        return
    if not re.fullmatch(r"[0-9a-f]{64}", stored) or stored != seal(metadata_text, graph_digest()):
        raise SpkverifError(
            f"{METADATA_NAME} metadata does not belong to the network in this file (copied from another model, "
            f"or edited): {SEAL_NAME} does not match",
            path,
        )


def probe_samples(metadata: dict[str, Any]) -> int:
    """Length of the silent input a network is run on to see its output size: `PROBE_SECONDS`, or
    `min_samples` if longer (up to 10 s)."""
    rate = int(metadata["sample_rate"])
    return max(round(PROBE_SECONDS * rate), min(int(metadata["min_samples"]), 10 * rate))


def check_embedding_dim(path: str | Path, metadata: dict[str, Any], found: int, how: str) -> None:
    """Refuse a file whose metadata's `embedding_dim` is not the size `found` of its network's
    output (`how`: where that size comes from, for the message). Raises `SpkverifError`."""
    if found != metadata["embedding_dim"]:
        raise SpkverifError(
            f"{METADATA_NAME} metadata says embedding_dim {metadata['embedding_dim']}, "
            f"but the network in the file outputs {found} ({how})",
            path,
        )


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop, or repeat a short utterance until it fills `length` samples; (T,) -> (length,)."""
    if len(samples) >= length:
        return samples[:length]
    if len(samples) == 0:
        return np.zeros(length, dtype=np.float32)
    repeats = -(-length // len(samples))
    return np.tile(samples, repeats)[:length]


def check_finite_embedding(embedding: np.ndarray, key: str) -> None:
    """Raise `SpkverifError` where a model computed NaN or inf for `key`'s embedding (D,):
    such a vector is never written, and no score is made from it."""
    if not np.isfinite(embedding).all():
        raise SpkverifError(f"the model computed a non-finite embedding for {key!r} (NaN or inf); nothing is written")


def embed_block(embedder: Embedder, audio: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Embeddings (D,) of whole utterances (T,); equal lengths share a batch of at most `batch_size`."""
    results: list[np.ndarray | None] = [None] * len(audio)
    by_length: dict[int, list[int]] = {}
    for position, samples in enumerate(audio):
        by_length.setdefault(len(samples), []).append(position)
    for positions in by_length.values():
        for start in range(0, len(positions), batch_size):
            chosen = positions[start : start + batch_size]
            embeddings = embedder(np.stack([audio[i] for i in chosen]))
            for i, embedding in zip(chosen, embeddings, strict=False):
                results[i] = embedding
    return results  # type: ignore[return-value]
