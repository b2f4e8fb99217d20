"""Training objectives, registered by name (`--loss NAME`)."""

from __future__ import annotations

from typing import Any

from spkverif.losses import margin  # noqa: F401  (registers its losses)
from spkverif.losses.base import LossHead, LossOutput
from spkverif.losses.registry import LOSSES


def build_loss(name: str, embedding_dim: int, num_classes: int, options: dict[str, Any] | None = None) -> LossHead:
    return LOSSES.build(name, embedding_dim, num_classes, **dict(options or {}))


__all__ = ["LOSSES", "LossHead", "LossOutput", "build_loss"]
