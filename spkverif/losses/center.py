"""Center loss (Wen et al. 2016): cross-entropy plus the pull of each embedding to its class center.

    L = CE(W x + b, y) + weight * 1/2 * mean_i ||x_i - c_{y_i}||^2

The centers are not trained by the optimiser. As in the paper's Algorithm 1, after
each training step every class j present in the step's batch moves towards its
embeddings by

    c_j <- c_j - center_lr * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)

where n_j counts the batch's samples of class j, so a class seen once moves half as
far as `center_lr` says and rare classes are not yanked around. The loss of the step
is computed on the old centers. With gradient accumulation or several processes the
"batch" is the whole step: the sums run over every micro-batch of every process
(`finish_step`), so all processes keep the same centers. The centers start at zero
and are a buffer: saved in checkpoints, untouched by the optimiser's learning rate
and weight decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch

from spkverif.base.registry import NonNegative, Range
from spkverif.losses.base import LOSSES, LossHead, LossOutput
from spkverif.losses.softmax import SoftmaxHead


class CenterLossHead(SoftmaxHead):
    def __init__(self, embedding_dim: int, num_classes: int, weight: float, center_lr: float):
        super().__init__(embedding_dim, num_classes)
        self.center_weight = weight
        self.center_lr = center_lr
        self.register_buffer("centers", torch.zeros(num_classes, embedding_dim))
        self.centers: torch.Tensor
        self._pulls: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        output = super().forward(embeddings, labels)
        embeddings = embeddings.float()
        offsets = embeddings - self.centers[labels]
        center_term = 0.5 * offsets.pow(2).sum(dim=1).mean()
        if self.training:
            self._collect(offsets.detach(), labels)
        return LossOutput(output.loss + self.center_weight * center_term, output.logits)

    @torch.no_grad()
    def _collect(self, offsets: torch.Tensor, labels: torch.Tensor) -> None:
        if self._pulls is None or self._counts is None:
            self._pulls = torch.zeros_like(self.centers)
            self._counts = torch.zeros(len(self.centers), device=self.centers.device)
        self._pulls.index_add_(0, labels, -offsets)
        self._counts += torch.bincount(labels, minlength=len(self.centers)).to(self._counts.dtype)

    @torch.no_grad()
    def finish_step(self, sum_over_processes: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Wen et al.'s center update, Algorithm 1, over the whole step's samples."""
        if self._pulls is None or self._counts is None:
            return
        pulls, counts = sum_over_processes(self._pulls), sum_over_processes(self._counts)
        self.centers -= self.center_lr * pulls / (1.0 + counts)[:, None]
        self.abandon_step()

    def abandon_step(self) -> None:
        self._pulls = self._counts = None


@LOSSES.register("center")
def build_center(
    embedding_dim: int,
    num_classes: int,
    weight: NonNegative = 0.01,
    center_lr: Annotated[float, Range(ge=0, le=1)] = 0.5,
) -> LossHead:
    """Softmax plus center loss; `weight` is the paper's lambda, `center_lr` its alpha."""
    return CenterLossHead(embedding_dim, num_classes, weight, center_lr)
