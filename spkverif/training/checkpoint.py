"""Checkpoints: full training states to resume from, and self-contained model files.

A model file carries the model's registry name and options, so `extract` can
rebuild the network without the training config.

A training state is one `torch.save` dictionary (`format: spkverif-train-state`)
written by a `Checkpointer`: a dictionary of named parts, each of which saves and
restores itself through `state_dict()` / `load_state_dict(state)` (the protocol
of torch modules, optimisers, schedulers and grad scalers; SpeechBrain's
`Checkpointer` and its "recoverables" follow the same idea). A part is stored
under its name, or spread over several top-level keys, so the files keep the
layout of earlier releases and old checkpoints resume.

A checkpoint is read back without running anything in it (`read_checkpoint`, with
torch's `weights_only=True`): a part's state must be made of tensors, plain Python
values (dict, list, tuple, str, int, float, bool, None) and NumPy uint32 arrays (NumPy's
generator state, `rng.numpy`), the `SAFE_GLOBALS` of `spkverif.models.files`; a part
holding any other object writes a checkpoint that is refused when read.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.models import SpeakerEmbeddingModel, build_model
from spkverif.models.files import MODEL_FORMAT, STATE_FORMAT, load_model, model_payload, read_checkpoint, save_atomic

logger = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_position(path: Path, steps_per_epoch: int) -> int:
    """Global step a checkpoint file stands for, from its name (epoch_N.pt or step_N.pt)."""
    kind, _, number = path.stem.partition("_")
    return int(number) * steps_per_epoch if kind == "epoch" else int(number)


def latest_checkpoint(models_dir: Path, steps_per_epoch: int) -> Path | None:
    """The checkpoint furthest into training; an epoch file wins a tie with a step file."""
    candidates = [p for p in models_dir.glob("epoch_*.pt")] + [p for p in models_dir.glob("step_*.pt")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (checkpoint_position(p, steps_per_epoch), p.stem.startswith("epoch")))


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; integer buffers (step counters) from the last."""
    averaged = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            averaged[key] = sum(state[key].double() for state in states).div(len(states)).to(value.dtype)
        else:
            averaged[key] = value.clone()
    return averaged


def average_epochs(directory: Path, model: SpeakerEmbeddingModel, wanted: int) -> SpeakerEmbeddingModel:
    """`model` itself for `wanted` 1; else a network of its kind holding the mean weights of the
    last `wanted` epoch checkpoints in `directory` (`--average N`; fewer, with a warning, if fewer exist)."""
    if wanted == 1:
        return model
    paths = sorted(directory.glob("epoch_*.pt"))[-wanted:]
    if len(paths) < wanted:
        logger.warning("--average %d asked for, but only %d epoch checkpoints exist", wanted, len(paths))
    states = [read_checkpoint(path)["model_state"] for path in paths]
    averaged = build_model(**model.spec)
    averaged.load_state_dict(average_states(states))
    logger.info("final model: the mean of %s", ", ".join(path.name for path in paths))
    return averaged


class Recoverable(Protocol):
    """What a checkpointer saves and restores. Torch modules, optimisers, schedulers and
    grad scalers already are; an optional `check(state, path)` runs, for every part,
    before any part is loaded (raise `SpkverifError` to refuse the checkpoint)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


class GlobalRng:
    """The global generators of Python, NumPy and torch (CPU and CUDA) as a part."""

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_rng_state(state)


class Record:
    """A value written into every checkpoint for the record and not restored (the
    configuration, the model's name and options); with `must_match`, a checkpoint
    holding another value is refused with that message. `upgrade` turns a value an
    older release wrote into today's form before the comparison (for the model's
    specification, `spkverif.models.legacy.upgrade_spec`)."""

    def __init__(
        self,
        value: Callable[[], Any],
        must_match: str | None = None,
        upgrade: Callable[[Any], Any] | None = None,
    ):
        self.value = value
        self.must_match = must_match
        self.upgrade = upgrade

    def state_dict(self) -> Any:
        return self.value()

    def check(self, state: Any, path: Path) -> None:
        if self.upgrade is not None:
            state = self.upgrade(state)
        if self.must_match is not None and state != self.value():
            raise SpkverifError(self.must_match, path)

    def load_state_dict(self, state: Any) -> None:
        """Nothing to restore: the value is the current run's."""


@dataclass
class _Entry:
    part: Recoverable
    keys: tuple[str, ...] | None
    required: bool


class Checkpointer:
    """Saves and restores named parts as `DIRECTORY/epoch_NNNN.pt` and `step_NNNNNNNN.pt` files.

    Only the newest `step_*` file is kept. A part added with `required=False` that an
    older checkpoint lacks keeps its current state (with a log line); a required one
    that is missing is a `SpkverifError` naming the part and the file.
    """

    def __init__(self, directory: Path, steps_per_epoch: int):
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.parts: dict[str, _Entry] = {}

    def add(self, name: str, part: Recoverable, keys: tuple[str, ...] | None = None, required: bool = True) -> None:
        """Save `part` under `name`, or (with `keys`) its state's entries `keys` at the top level."""
        if name in self.parts or name == "format":
            raise ValueError(f"checkpoint part {name!r} given twice")
        self.parts[name] = _Entry(part, keys, required)

    def payload(self) -> dict[str, Any]:
        """What a checkpoint file holds: the format, then every part in the order added."""
        payload: dict[str, Any] = {"format": STATE_FORMAT}
        for name, entry in self.parts.items():
            state = entry.part.state_dict()
            if entry.keys is None:
                payload[name] = state
            else:
                payload.update((key, state[key]) for key in entry.keys)
        return payload

    def save(self, name: str) -> Path:
        """Write `DIRECTORY/name` atomically; remove older mid-epoch (`step_*`) files."""
        path = self.directory / name
        save_atomic(self.payload(), path)
        for older in self.directory.glob("step_*.pt"):
            if older != path:
                older.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        return latest_checkpoint(self.directory, self.steps_per_epoch)

    def _states(self, payload: dict[str, Any], path: Path, names: Iterable[str]) -> dict[str, Any]:
        states = {}
        for name in names:
            entry = self.parts[name]
            keys = entry.keys or (name,)
            missing = [key for key in keys if key not in payload]
            if not missing:
                states[name] = payload[name] if entry.keys is None else {key: payload[key] for key in keys}
            elif entry.required:
                raise SpkverifError(f"the checkpoint has no {', '.join(missing)} (part {name!r})", path)
            else:
                logger.info("%s has no %s: it keeps its initial state", path, name)
        return states

    def load(self, path: Path, only: Iterable[str] | None = None) -> None:
        """Restore every part from `path`, or only the parts named in `only` (the others
        keep their state): all checked first, then all loaded, in the order added.

        Raises `SpkverifError` for a file that is not a training checkpoint, lacks a
        required part, or holds a `Record` that must match and does not; `ValueError`
        for a name in `only` that was never added (a bug).
        """
        wanted = set(self.parts if only is None else only)
        if wanted - set(self.parts):
            raise ValueError(f"no checkpoint part {sorted(wanted - set(self.parts))}")
        names = [name for name in self.parts if name in wanted]
        payload = read_checkpoint(path)
        if payload["format"] != STATE_FORMAT:
            raise SpkverifError("not a training checkpoint", path)
        states = self._states(payload, path, names)
        for name, state in states.items():
            check = getattr(self.parts[name].part, "check", None)
            if check is not None:
                check(state, path)
        for name, state in states.items():
            self.parts[name].part.load_state_dict(state)


__all__ = [
    "MODEL_FORMAT",
    "STATE_FORMAT",
    "Checkpointer",
    "GlobalRng",
    "Record",
    "load_model",
    "model_payload",
    "read_checkpoint",
    "save_atomic",
]
