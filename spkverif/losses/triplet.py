"""Margin triplet loss: max(0, d(a, p) - d(a, n) + m), with the triplets a mining strategy picks.

batch-all   every valid triplet of the batch, averaged over those with a non-zero
            loss (Hermans et al. 2017's "BA!=0"; pytorch-metric-learning's default)
batch-hard  per anchor, its farthest positive and nearest negative, averaged over
            anchors (Hermans et al. 2017)
semi-hard   every triplet whose negative is farther than the positive but within
            the margin, 0 < d(a, n) - d(a, p) <= m (Schroff et al. 2015), averaged
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch

from spkverif.base.registry import OneOf, Positive, Registry
from spkverif.losses.base import LOSSES, LossHead, LossOutput
from spkverif.losses.pairs import DISTANCES, PairLoss, mean_or_zero, same_speaker

Miner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
MINERS: Registry[Miner] = Registry("triplet mining")


def _all_triplets(distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor):
    """(B, B, B) anchor-positive minus anchor-negative distances, and which (a, p, n) are valid."""
    gap = distances[:, :, None] - distances[:, None, :]
    valid = positive[:, :, None] & negative[:, None, :]
    return gap, valid


@MINERS.register("batch-all")
def batch_all(distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Every valid triplet, averaged over those with a non-zero loss (Hermans et al. 2017)."""
    gap, valid = _all_triplets(distances, positive, negative)
    losses = (gap[valid] + margin).clamp_min(0)
    return mean_or_zero(losses[losses > 0], distances)


@MINERS.register("batch-hard")
def batch_hard(distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Per anchor, its farthest positive and nearest negative (Hermans et al. 2017)."""
    farthest_positive = distances.masked_fill(~positive, float("-inf")).amax(dim=1)
    nearest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
    usable = positive.any(dim=1) & negative.any(dim=1)
    losses = (farthest_positive - nearest_negative + margin).clamp_min(0)
    return mean_or_zero(losses[usable], distances)


@MINERS.register("semi-hard")
def semi_hard(distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Negatives farther than the positive but within the margin (Schroff et al. 2015)."""
    gap, valid = _all_triplets(distances, positive, negative)
    chosen = valid & (gap < 0) & (gap >= -margin)
    return mean_or_zero(gap[chosen] + margin, distances)


class TripletHead(PairLoss):
    def __init__(self, distance: str, margin: float, mining: str):
        super().__init__(distance, margin)
        self.mining = mining
        self.miner = MINERS.get(mining)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        distances = self.distance(embeddings)
        positive, negative = same_speaker(labels)
        return LossOutput(self.miner(distances, positive, negative, self.margin))


@LOSSES.register("triplet")
def build_triplet(
    embedding_dim: int,
    num_classes: int,
    margin: Positive = 0.2,
    mining: Annotated[str, OneOf(MINERS)] = "batch-hard",
    distance: Annotated[str, OneOf(DISTANCES)] = "cosine",
) -> LossHead:
    """Triplet loss on `distance` (cosine or euclidean), `mining` batch-all, batch-hard or semi-hard."""
    return TripletHead(distance, margin, mining)
