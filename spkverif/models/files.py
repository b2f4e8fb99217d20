"""Model files: reading a checkpoint back into a network, its fingerprint, the device to run it on.

Inference (extract, export, verify, import) loads models through this module and
never through `spkverif.training`; the training checkpointer writes the files.
A model file is a `torch.save` dictionary with `format: spkverif-model`, the
model's spec (`model`: registry name and options, front end's name and options,
sample rate; `spkverif.models.build_model`'s arguments), and its `state_dict`; a
training checkpoint (`format: spkverif-train-state`) holds the same network under
`model_state`. Files written before front ends were components (front-end options
inside the model's) are read too (`spkverif.models.legacy`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.models import SpeakerEmbeddingModel, build_model
from spkverif.models.legacy import is_legacy, upgrade_spec

MODEL_FORMAT = "spkverif-model"
STATE_FORMAT = "spkverif-train-state"


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """`torch.save` to a temporary file, then rename: readers never see half a file."""
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)


def model_payload(model: SpeakerEmbeddingModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model file's contents: format, the model's name and options, its weights, and `extra` entries."""
    return {
        "format": MODEL_FORMAT,
        "version": 1,
        "model": model.spec,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "embedding_dim": model.embedding_dim,
        "sample_rate": model.sample_rate,
        **(extra or {}),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a spkverif model file or training checkpoint.

    Raises `SpkverifError` when the file is missing, unreadable, or of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such model file", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise SpkverifError(f"not a readable checkpoint: {error}", path) from None
    if not isinstance(payload, dict) or payload.get("format") not in (MODEL_FORMAT, STATE_FORMAT):
        raise SpkverifError("not a spkverif model or training checkpoint", path)
    return payload


def load_model(path: str | Path) -> SpeakerEmbeddingModel:
    """Rebuild a model from a model file or a training checkpoint, in eval mode."""
    payload = read_checkpoint(path)
    stored = payload["model"]
    model = build_model(**upgrade_spec(stored, payload.get("sample_rate")))
    if is_legacy(stored):
        model.stored_spec = stored  # the fingerprint of an old file stays what it was (`model_fingerprint`)
    state = payload["state_dict"] if payload["format"] == MODEL_FORMAT else payload["model_state"]
    model.load_state_dict(state)
    return model.eval()


def model_fingerprint(model: SpeakerEmbeddingModel) -> str:
    """A short hash of the network's name, options and weights (16 hex digits).

    Two files hold the same network exactly when their fingerprints agree; an
    exported file and a calibration carry the fingerprint of the model they came
    from, so `verify` can refuse a calibration made for another model. A model
    read from a file of the old shape (`spkverif.models.legacy`) hashes the spec as
    that file holds it, so calibrations and exports made from it still match.
    """
    spec = getattr(model, "stored_spec", model.spec)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()[:16]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (the local rank's GPU if there is one) as a device.

    Raises `SpkverifError` for an unknown name or a GPU asked for where there is none.
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpkverifError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpkverifError(f"device {name!r} asked for, but no CUDA GPU is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device
