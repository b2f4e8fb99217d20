"""What the pair losses share: distances between every two embeddings of a batch, and which pairs match.

Both distances compare L2-normalised embeddings, as cosine scoring will:
  cosine     1 - cos(x_i, x_j), in [0, 2]
  euclidean  ||x_i/|x_i| - x_j/|x_j|||, in [0, 2]; sqrt(2 - 2 cos), taken with its
             argument clamped away from 0 so identical embeddings give a finite gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from spkverif.base.registry import Registry
from spkverif.losses.base import LossHead

DISTANCES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("distance")


def _cosine_similarities(embeddings: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(embeddings.float())
    return unit @ unit.T


@DISTANCES.register("cosine")
def cosine_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of every pair: (B, D) -> (B, B), in [0, 2]."""
    return 1.0 - _cosine_similarities(embeddings)


@DISTANCES.register("euclidean")
def euclidean_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every pair of length-normalised embeddings: (B, D) -> (B, B), in [0, 2]."""
    return (2.0 - 2.0 * _cosine_similarities(embeddings)).clamp_min(1e-12).sqrt()


def same_speaker(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, B) masks of positive pairs (same label, i != j) and negative pairs (different labels)."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive, ~same


def mean_or_zero(values: torch.Tensor, graph_from: torch.Tensor) -> torch.Tensor:
    """The mean, or a zero still attached to the graph when there is nothing to average."""
    return values.mean() if values.numel() else graph_from.sum() * 0.0


class PairLoss(LossHead):
    """A loss on distances within the batch: no class matrix, so it needs P >= 2 speakers x K >= 2 chunks."""

    min_speakers_per_batch = 2
    min_utts_per_speaker = 2

    def __init__(self, distance: str, margin: float):
        super().__init__()
        self.distance_name = distance
        self.distance = DISTANCES.get(distance)
        self.margin = margin
