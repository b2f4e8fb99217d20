"""PyTorch model files and TorchScript exports as `Embedder`s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.errors import SpkverifError
from spkverif.models import SpeakerEmbeddingModel
from spkverif.models.files import load_model, model_fingerprint, resolve_device
from spkverif.runtime.base import METADATA_NAME, Embedder, parse_metadata
from spkverif.runtime.buckets import bucket_convolutions


def model_metadata(model: SpeakerEmbeddingModel) -> dict[str, Any]:
    """What an exported file carries about `model` (see `Embedder`)."""
    return {
        "model": model.spec,
        "sample_rate": model.sample_rate,
        "embedding_dim": model.embedding_dim,
        "min_samples": model.min_samples,
        "fingerprint": model_fingerprint(model),
    }


class PytorchEmbedder(Embedder):
    """A `SpeakerEmbeddingModel` in eval mode on `device`."""

    def __init__(self, model: SpeakerEmbeddingModel, device: torch.device):
        super().__init__(model_metadata(model), "pytorch")
        self.model = model.eval().to(device)
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> PytorchEmbedder:
        """Load a model file or training checkpoint (`SpkverifError` if it is neither). On
        the CPU its convolutions run on length buckets (`spkverif.runtime.buckets`: the
        same embeddings, without building oneDNN kernels for every utterance's length)."""
        model, target = load_model(path), resolve_device(device)
        if target.type == "cpu":
            bucket_convolutions(model)
        return cls(model, target)

    @torch.inference_mode()
    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)).to(self.device)
        return self.model(batch).float().cpu().numpy()


class TorchScriptEmbedder(Embedder):
    """A file from `spkverif export --format torchscript`."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: dict[str, Any], device: torch.device):
        super().__init__(metadata, "torchscript")
        self.module = module
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> TorchScriptEmbedder:
        """Load `path`; `SpkverifError` for a file torch.jit cannot read or one without our metadata."""
        target = resolve_device(device)
        extra = {METADATA_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location=target, _extra_files=extra)
        except RuntimeError as error:
            raise SpkverifError(f"not a TorchScript file: {str(error).strip().splitlines()[0]}", path) from None
        return cls(module, parse_metadata(extra[METADATA_NAME], path), target)

    @torch.inference_mode()
    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)).to(self.device)
        with torch.jit.optimized_execution(False):
            return self.module(batch).float().cpu().numpy()
