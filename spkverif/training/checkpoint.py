"""Checkpoints: full training states to resume from, and self-contained model files.

A model file carries the model's registry name and options, so `extract` can
rebuild the network without the training config.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.models.files import MODEL_FORMAT, STATE_FORMAT, load_model, model_payload, read_checkpoint, save_atomic


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


__all__ = ["MODEL_FORMAT", "STATE_FORMAT", "load_model", "model_payload", "read_checkpoint", "save_atomic"]
