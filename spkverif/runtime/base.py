"""What every runtime offers: an `Embedder`, and the metadata an exported file carries."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.errors import SpkverifError

METADATA_NAME = "spkverif.json"
METADATA_KEYS = ("model", "sample_rate", "embedding_dim", "min_samples", "fingerprint")


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


def parse_metadata(text: str | None, path: str | Path) -> dict[str, Any]:
    """The metadata an exported file carries, checked for every key; one-line errors otherwise."""
    if not text:
        raise SpkverifError(f"no {METADATA_NAME} metadata: not a model exported by `spkverif export`", path)
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpkverifError(f"{METADATA_NAME} metadata is not JSON: {error}", path) from None
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise SpkverifError(f"{METADATA_NAME} metadata lacks {', '.join(missing)}", path)
    return metadata


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop, or repeat a short utterance until it fills `length` samples; (T,) -> (length,)."""
    if len(samples) >= length:
        return samples[:length]
    if len(samples) == 0:
        return np.zeros(length, dtype=np.float32)
    repeats = -(-length // len(samples))
    return np.tile(samples, repeats)[:length]
