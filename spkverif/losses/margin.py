"""Margin-based classification losses on normalised embeddings and class centres."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.losses.base import LossHead, LossOutput
from spkverif.losses.registry import LOSSES


class CosineClassifier(LossHead):
    """A learned class matrix compared to embeddings by cosine similarity."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))


class AdditiveAngularMargin(CosineClassifier):
    """ArcFace: cross-entropy on s * cos(theta + m) for the true class, s * cos(theta) otherwise.

    Where theta + m would pass pi the target logit would rise again, so past that
    point it continues as cos(theta) - m sin(m), which keeps decreasing (the usual fix).
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.05, scale: float = 10.0):
        super().__init__(embedding_dim, num_classes)
        self.scale = scale
        self.margin = margin
        self._final_margin = margin

    @property
    def final_margin(self) -> float:
        return self._final_margin

    def set_margin(self, margin: float) -> None:
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cosine = self.cosine(embeddings)
        target_cosine = cosine.gather(1, labels[:, None])
        sine = (1.0 - target_cosine.pow(2)).clamp_min(1e-7).sqrt()
        with_margin = target_cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        threshold = math.cos(math.pi - self.margin)
        fallback = target_cosine - self.margin * math.sin(self.margin)
        with_margin = torch.where(target_cosine > threshold, with_margin, fallback)
        logits = cosine.scatter(1, labels[:, None], with_margin) * self.scale
        return LossOutput(F.cross_entropy(logits, labels), cosine * self.scale)


@LOSSES.register("aam")
def build_aam(embedding_dim: int, num_classes: int, margin: float = 0.05, scale: float = 10.0) -> LossHead:
    """Additive angular margin (ArcFace); the paper's m = 0.05, s = 10 by default."""
    return AdditiveAngularMargin(embedding_dim, num_classes, margin, scale)
