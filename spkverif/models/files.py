"""Model files: reading a checkpoint back into a network, its fingerprint, the device to run it on.

Inference (extract, export, verify, import) loads models through this module and
never through `spkverif.training`; the training checkpointer writes the files.
A model file is a `torch.save` dictionary with `format: spkverif-model`, the
model's spec (`model`: registry name and options, front end's name and options,
sample rate; `spkverif.models.build_model`'s arguments), and its `state_dict`; a
training checkpoint (`format: spkverif-train-state`) holds the same network under
`model_state`. Files written before front ends were components (front-end options
inside the model's) are read too (`spkverif.models.legacy`).

Opening a file runs nothing from it. `torch.load` is called with `weights_only=True`:
its unpickler rebuilds tensors and plain Python values (dict, list, tuple, str, number,
None) and, besides those, only the globals in `SAFE_GLOBALS` (the NumPy array a
training checkpoint's random-generator state holds). A file naming any other global (a
function such as `os.system`, a class of its own) is refused with one line before
anything in it is called; so is a file whose entries contradict its network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.models import SpeakerEmbeddingModel, build_model
from spkverif.models.legacy import is_legacy, upgrade_spec

MODEL_FORMAT = "spkverif-model"
STATE_FORMAT = "spkverif-train-state"


def _numpy_globals() -> list[Any]:
    """What `np.random.get_state()` (a training checkpoint's `rng.numpy`) pickles as: an
    ndarray of uint32 rebuilt by `_reconstruct`, under NumPy 2's module name and NumPy
    1's (files written with either open under either)."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return [
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType: a dtype's state is set on an instance of it
    ]


# The globals a spkverif model file or training checkpoint may name, besides what
# torch's weights-only unpickler allows by default (tensors, storages, OrderedDict).
SAFE_GLOBALS: list[Any] = _numpy_globals()

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")

# torch.nn.init's initialisers, which modules call as they are built.
_INITIALISERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)  # fmt: skip


@contextlib.contextmanager
def _initialisers_skipped() -> Iterator[None]:
    """Inside, torch.nn.init's initialisers leave their tensor as it is: a network about to receive
    every weight from a file (load_state_dict, strict) is built without drawing random ones (a third of
    the loading time of CAM++ and ResNet34 here). What a module computes in its constructor otherwise
    (filterbanks, windows, non-persistent buffers) is unchanged. As transformers' `no_init_weights`."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    for name in _INITIALISERS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _first_line(error: Exception) -> str:
    """torch's reason for refusing a file, on one line (the weights-only unpickler's own, if it gave one)."""
    text = str(error).partition("WeightsUnpickler error:")[2] or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[0]
    return "Ran out of input" if isinstance(error, EOFError) else type(error).__name__


def load_safely(path: str | Path, refused: str, unreadable: str, allowed: Sequence[Any] = ()) -> Any:
    """`torch.load(path)` on the CPU with `weights_only=True`: nothing in the file runs.

    `allowed` are globals the file may name besides torch's defaults (tensors, storages,
    OrderedDict), allowed for this call only (`torch.serialization.safe_globals`).
    Raises `SpkverifError` naming the file: `REFUSED: it holds pickled code (GLOBAL
    posix.system), which spkverif never runs` for a file naming any other global,
    `UNREADABLE: <torch's reason>` for one torch cannot read (empty, truncated, not a
    pickle).
    """
    try:
        with torch.serialization.safe_globals(list(allowed)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. about a pickle protocol torch.save does not write
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = _GLOBAL.search(str(error))
        if named:
            raise SpkverifError(
                f"{refused}: it holds pickled code (GLOBAL {named.group(1)}), which spkverif never runs", path
            ) from None
        raise SpkverifError(f"{unreadable}: {_first_line(error)}", path) from None
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise SpkverifError(f"{unreadable}: {_first_line(error)}", path) from None


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """`torch.save` to a temporary file, then rename: readers never see half a file.

    The payload is serialised in memory first, so a full disk or a file-size limit
    reaches `atomic_write` as the OSError of a plain write (one line naming `path`,
    `SpkverifError`) rather than as torch's zip writer's RuntimeError.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())


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
    """The payload of a spkverif model file or training checkpoint, read without running anything in it.

    Only tensors, plain values and `SAFE_GLOBALS` are rebuilt (`load_safely`).
    Raises `SpkverifError` when the file is missing, unreadable, names any other
    global (pickled code), or is of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such model file", path)
    payload = load_safely(
        path, "not a spkverif model file or training checkpoint", "not a readable checkpoint", SAFE_GLOBALS
    )
    if not isinstance(payload, dict) or payload.get("format") not in (MODEL_FORMAT, STATE_FORMAT):
        raise SpkverifError("not a spkverif model or training checkpoint", path)
    return payload


def _mismatch(error: RuntimeError) -> str:
    """The first particular of `load_state_dict`'s complaint (after its 'Error(s) in loading' heading)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith("Error(s) in loading")]
    return (details or lines or [type(error).__name__])[0].rstrip(".")


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, refusal: str) -> None:
    """`module.load_state_dict(state)` (strict), or `SpkverifError` naming `path`: `REFUSAL: ` and the
    first key that is missing, unexpected or of another shape."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise SpkverifError(f"{refusal}: {_mismatch(error)}", path) from None


def load_model(path: str | Path) -> SpeakerEmbeddingModel:
    """Rebuild a model from a model file or a training checkpoint, in eval mode.

    Raises `SpkverifError` (see `read_checkpoint`) for a file that is not one, and for
    one that contradicts itself: a `model` entry that is not a network's description,
    weights that do not fit the network it describes, or an `embedding_dim` or
    `sample_rate` entry other than that network's.
    """
    payload = read_checkpoint(path)
    stored = payload.get("model")
    key = "state_dict" if payload["format"] == MODEL_FORMAT else "model_state"
    state = payload.get(key)
    if not isinstance(stored, dict) or not isinstance(stored.get("name"), str):
        raise SpkverifError("the file's `model` entry is not a network's name and options", path)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SpkverifError(f"the file's `{key}` entry is not a dictionary of tensors", path)
    try:
        with _initialisers_skipped():  # every weight comes from the file, strictly (load_weights)
            model = build_model(**upgrade_spec(stored, payload.get("sample_rate")))
    except TypeError as error:  # an entry build_model does not take
        raise SpkverifError(f"the file's `model` entry does not describe a network: {error}", path) from None
    if is_legacy(stored):
        model.stored_spec = stored  # the fingerprint of an old file stays what it was (`model_fingerprint`)
    load_weights(model, state, path, f"the weights do not fit the network the file describes ({stored['name']})")
    for entry in ("embedding_dim", "sample_rate"):
        if entry in payload and payload[entry] != getattr(model, entry):
            raise SpkverifError(
                f"the file says {entry} {payload[entry]!r}, but the network it holds has {getattr(model, entry)}",
                path,
            )
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
