"""Contrastive loss (Hadsell, Chopra and LeCun 2006) over every pair of the batch.

    L = mean over positive pairs of d^p + mean over negative pairs of max(0, m - d)^p

with p = 2 (`squared`, the original form, and the one Coria et al. trained with)
or p = 1. Positive and negative pairs are averaged apart, so the many negatives of
a P x K batch do not drown the P K (K - 1) / 2 positives.
"""

from __future__ import annotations

from typing import Annotated

import torch

from spkverif.base.registry import OneOf, Positive
from spkverif.losses.base import LOSSES, LossHead, LossOutput
from spkverif.losses.pairs import DISTANCES, PairLoss, mean_or_zero, same_speaker


class ContrastiveHead(PairLoss):
    def __init__(self, distance: str, margin: float, squared: bool):
        super().__init__(distance, margin)
        self.power = 2 if squared else 1

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        distances = self.distance(embeddings)
        positive, negative = same_speaker(labels)
        upper = torch.ones_like(positive).triu(diagonal=1)
        pull = distances[positive & upper].pow(self.power)
        push = (self.margin - distances[negative & upper]).clamp_min(0).pow(self.power)
        return LossOutput(mean_or_zero(pull, distances) + mean_or_zero(push, distances))


@LOSSES.register("contrastive")
def build_contrastive(
    embedding_dim: int,
    num_classes: int,
    distance: Annotated[str, OneOf(DISTANCES)] = "cosine",
    margin: Positive = 0.5,
    squared: bool = True,
) -> LossHead:
    """Contrastive loss on `distance` (cosine or euclidean) with negatives pushed past `margin`."""
    return ContrastiveHead(distance, margin, squared)
