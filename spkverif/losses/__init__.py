"""Training objectives, registered by name (`--loss NAME`).

Classification family (a learned class matrix): softmax, center, coco, aam, am,
subcenter_aam. Pair family (distances within P speakers x K chunks): contrastive,
triplet.
"""

from __future__ import annotations

from typing import Any

from spkverif.losses import center, coco, contrastive, margin, softmax, triplet  # noqa: F401  (register their losses)
from spkverif.losses.base import LOSSES, LossHead, LossOutput


def build_loss(name: str, embedding_dim: int, num_classes: int, options: dict[str, Any] | None = None) -> LossHead:
    return LOSSES.build(name, embedding_dim, num_classes, **dict(options or {}))


__all__ = ["LOSSES", "LossHead", "LossOutput", "build_loss"]
