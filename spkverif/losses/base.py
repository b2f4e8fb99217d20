"""The loss contract: embeddings (B, D) and speaker labels (B,) in, a scalar loss out.

A loss is a module with its own parameters (a class matrix, centres, nothing)
and declares the batches it can learn from, which the trainer checks before
the first step rather than failing with a NaN later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.base.registry import Registry

LOSSES: Registry = Registry("loss")
"""Every loss by name (`train --loss NAME`); each loss module registers its own."""


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
        """The margin a margin scheduler rises to; None for a loss without one."""
        return None

    def finish_step(self, sum_over_processes: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Called once after each optimiser step: apply updates that are not gradient steps.

        A loss that keeps such state (the center loss's centres) collects what each
        micro-batch asks for during the step and applies it here, once, summed over
        micro-batches and over the processes of a distributed run, so every process
        keeps the same state and `torchrun` matches its single-process equivalent.
        """

    def abandon_step(self) -> None:
        """Forget what a step that is being skipped (a non-finite loss) collected."""


class CosineClassifier(LossHead):
    """A learned class matrix compared to embeddings by cosine similarity."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, rows of the class matrix), in float32 outside autocast (training runs the
        heads with autocast off: `spkverif.training.build.TrainingNetwork`)."""
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
