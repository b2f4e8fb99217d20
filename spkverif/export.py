"""The `export` stage: a trained model -> a TorchScript file that runs without spkverif.

The file holds the whole network, front end included: waveforms (B, T) at the
model's sample rate, float32 in [-1, 1], in; embeddings (B, D) out. It loads
with `torch.jit.load` in Python or `torch::jit::load` in C++ (libtorch), and
carries `spkverif.json` (model name, options, sample rate, embedding size,
shortest input) as an extra file.

The network is traced in eval mode; tracing records operations, not shapes, so
the file accepts any batch size and any length from `min_samples` up. Before
writing, the traced network is run on a batch of another size and length and
must give the same embeddings as the model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.models import SpeakerEmbeddingModel
from spkverif.training.checkpoint import load_model

METADATA_NAME = "spkverif.json"
_TOLERANCE = 1e-4


def _probe(model: SpeakerEmbeddingModel, batch: int, seconds: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    samples = max(model.min_samples, round(seconds * model.sample_rate))
    return 0.1 * torch.randn(batch, samples, generator=generator)


def trace_model(model: SpeakerEmbeddingModel) -> tuple[torch.jit.ScriptModule, float]:
    """Trace `model` in eval mode; returns it and its largest relative deviation on a new input shape."""
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings(), torch.jit.optimized_execution(False):
        # The tracer warns about shape checks inside BatchNorm and InstanceNorm that hold for every input.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _probe(model, 2, 2.0, 0), check_trace=False)
        check = _probe(model, 3, 3.3, 1)
        expected = model(check)
        deviation = ((traced(check) - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
    if deviation > _TOLERANCE:
        raise RuntimeError(f"the traced model differs from the model by {deviation:g} (relative) on a new shape")
    return traced, deviation


def metadata(model: SpeakerEmbeddingModel) -> dict[str, Any]:
    return {
        "model": model.spec,
        "sample_rate": model.sample_rate,
        "embedding_dim": model.embedding_dim,
        "min_samples": model.min_samples,
    }


def export_model(model_path: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Run the export stage: trace the model file, check it, write it atomically."""
    model = load_model(model_path)
    traced, deviation = trace_model(model)
    info = metadata(model)
    with atomic_write(out_path, "wb") as handle:
        torch.jit.save(traced, handle, _extra_files={METADATA_NAME: json.dumps(info)})
    return {**info, "max_deviation": deviation, "path": str(out_path)}


def load_exported(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """An exported model and its metadata (what a deployment would do, here for tests and checks)."""
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such exported model", path)
    extra = {METADATA_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        raise SpkverifError(f"not a TorchScript file: {error}", path) from None
    return module, json.loads(extra[METADATA_NAME] or "{}")
