"""What every runtime offers: an `Embedder`, and the metadata an exported file carries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.errors import SpkverifError
from spkverif.io.tables import parse_json

METADATA_NAME = "spkverif.json"


class Embedder(ABC):
    """A network ready to run: waveforms (B, T) float32 in [-1, 1] in, embeddings (B, D) float32 out.

    `metadata` holds the model's name and options (`model`), `sample_rate` (Hz),
    `embedding_dim` (D), `min_samples` (shortest input it accepts, in samples) and
    `fingerprint` (a hash of name, options and weights; see
    `spkverif.models.files.model_fingerprint`).
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
