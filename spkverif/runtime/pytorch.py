"""PyTorch model files and TorchScript exports as `Embedder`s."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.models import SpeakerEmbeddingModel
from spkverif.models.files import load_model, model_fingerprint, resolve_device
from spkverif.runtime.base import (
    DEVICE,
    METADATA_NAME,
    SEAL_NAME,
    Embedder,
    check_embedding_dim,
    check_seal,
    parse_metadata,
    probe_samples,
)
from spkverif.runtime.buckets import bucket_convolutions

# Members of a TorchScript archive (below its top folder) that say what the network computes.
_COMPUTED = ("code/", "constants/", "data/", "constants.pkl", "data.pkl")


def torchscript_digest(data: bytes | str | Path) -> str:
    """sha256 (hex) of what a TorchScript archive (`torch.jit.save`'s zip; its bytes or its path)
    computes: its code, constants and tensors, member by member in name order. Left out: the
    extra files (`spkverif.json`, `spkverif.seal`), the debug tables (source positions), the traced
    inputs and the archive's random serialisation id. Raises `zipfile.BadZipFile` for another file."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    digest = hashlib.sha256()
    with zipfile.ZipFile(source) as archive:
        for name in sorted(archive.namelist()):
            inner = name.partition("/")[2]
            if inner.startswith(_COMPUTED) and not inner.endswith(".debug_pkl"):
                digest.update(f"{inner}\n{archive.getinfo(name).file_size}\n".encode())
                digest.update(archive.read(name))
    return digest.hexdigest()


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
    def from_file(cls, path: str | Path, device: str = DEVICE) -> PytorchEmbedder:
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
    def from_file(cls, path: str | Path, device: str = DEVICE) -> TorchScriptEmbedder:
        """Load `path`, run it once on `PROBE_SECONDS` of silence (`spkverif.runtime.base`).

        Raises `SpkverifError` for a file torch.jit cannot read, one without our metadata,
        and one whose metadata contradicts its network: another embedding size than the
        network outputs, or a seal that does not match.
        """
        target = resolve_device(device)
        extra: dict[str, Any] = {METADATA_NAME: "", SEAL_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location=target, _extra_files=extra)
        except RuntimeError as error:
            raise SpkverifError(f"not a TorchScript file: {str(error).strip().splitlines()[0]}", path) from None
        text, stored = (extra[name].decode() if isinstance(extra[name], bytes) else extra[name] for name in extra)
        embedder = cls(module, parse_metadata(text, path), target)
        embedder._check_probe(Path(path))
        check_seal(path, text, stored, lambda: torchscript_digest(Path(path)))
        return embedder

    def _check_probe(self, path: Path) -> None:
        """The network's output size on silence against the metadata's."""
        samples = probe_samples(self.metadata)
        try:
            output = self(np.zeros((1, samples), dtype=np.float32))
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SpkverifError(f"the network does not run on {samples} samples of silence: {first}", path) from None
        if output.ndim != 2 or output.shape[0] != 1:
            raise SpkverifError(f"the network outputs shape {list(output.shape)}, not (batch, embedding)", path)
        seconds = samples / self.sample_rate
        check_embedding_dim(path, self.metadata, int(output.shape[1]), f"on {seconds:g} s of silence")

    @torch.inference_mode()
    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)).to(self.device)
        with torch.jit.optimized_execution(False):
            return self.module(batch).float().cpu().numpy()
