"""Congenerous cosine loss (Liu et al. 2017): softmax over scaled cosines to learned class centres."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spkverif.base.registry import Positive
from spkverif.losses.base import LOSSES, CosineClassifier, LossHead, LossOutput


class CongenerousCosine(CosineClassifier):
    """Cross-entropy on scale * cos(x, c_k): what AAM becomes with no margin."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float):
        super().__init__(embedding_dim, num_classes)
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.cosine(embeddings) * self.scale
        return LossOutput(F.cross_entropy(logits, labels), logits)


@LOSSES.register("coco")
def build_coco(embedding_dim: int, num_classes: int, scale: Positive = 10.0) -> LossHead:
    """Congenerous cosine; scale 10 by default, AAM's paper scale, so the two differ only by the margin."""
    return CongenerousCosine(embedding_dim, num_classes, scale)
