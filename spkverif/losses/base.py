"""The loss contract: embeddings (B, D) and speaker labels (B,) in, a scalar loss out.

A loss is a module with its own parameters (a class matrix, centres, nothing)
and declares the batches it can learn from, which the trainer checks before
the first step rather than failing with a NaN later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossOutput:
    loss: torch.Tensor
    logits: torch.Tensor | None = None


class LossHead(nn.Module):
    """Base for every loss: subclasses set the batch requirements and `forward`."""

    min_speakers_per_batch: int = 1
    min_utts_per_speaker: int = 1

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:  # pragma: no cover
        raise NotImplementedError

    def set_margin(self, margin: float) -> None:
        """Margin losses override this so a margin scheduler can drive them."""

    @property
    def final_margin(self) -> float | None:
        return None
