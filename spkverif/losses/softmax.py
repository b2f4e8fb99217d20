"""The baseline: a linear class layer and cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.losses.base import LOSSES, LossHead, LossOutput


class SoftmaxHead(LossHead):
    """Cross-entropy on W x + b: no normalisation, no margin."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.classifier(embeddings.float())
        return LossOutput(F.cross_entropy(logits, labels), logits)


@LOSSES.register("softmax")
def build_softmax(embedding_dim: int, num_classes: int) -> LossHead:
    """Linear layer + cross-entropy, the baseline of every comparison."""
    return SoftmaxHead(embedding_dim, num_classes)
