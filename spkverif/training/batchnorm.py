"""BatchNorm running statistics over the micro-batches of one step, and across processes.

A step of G micro-batches on each of W processes must leave the running
statistics that one process sees after the step no matter how the step was
split: each micro-batch starts from the statistics before the step, and the step
ends with their mean over all G x W micro-batches (so `torchrun` with N processes
and `--grad-accum N` in one end alike). A step skipped for a non-finite loss puts
the statistics (and the layers' step counters) back as they were.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _tracking_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose statistics a step moves: those in training mode (a frozen part's,
    `spkverif.training.parts`, run in eval mode and keep theirs exactly)."""
    return [
        layer
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats and layer.training
    ]


def batchnorm_buffers(module: nn.Module) -> list[torch.Tensor]:
    """Running statistics of every BatchNorm layer in training mode (the step counters are kept apart)."""
    buffers = []
    for layer in _tracking_layers(module):
        buffers += [layer.running_mean, layer.running_var]
    return buffers


def batchnorm_counters(module: nn.Module) -> list[torch.Tensor]:
    """`num_batches_tracked` of every BatchNorm layer in training mode."""
    return [layer.num_batches_tracked for layer in _tracking_layers(module)]


class BatchNormStep:
    """The BatchNorm statistics of `module` through one step, snapshotted when made.

    `average`: every micro-batch starts from the snapshot and `finish` sets the mean
    of their results (several micro-batches, or several processes). `keep`: hold a
    snapshot for `rollback` (implied by `average`).
    """

    def __init__(self, module: nn.Module, average: bool, keep: bool):
        self.buffers = batchnorm_buffers(module)
        self.counters = batchnorm_counters(module)
        self.average = average
        everything = self.buffers + self.counters
        self.snapshot = [buffer.clone() for buffer in everything] if average or keep else []
        self.sums = [torch.zeros_like(buffer) for buffer in self.buffers] if average else []
        self.parts = 0

    def before_part(self) -> None:
        """Start a micro-batch from the statistics before the step."""
        if self.average:
            self._restore()

    def after_part(self) -> None:
        """Add a micro-batch's statistics to the sums."""
        if self.average:
            for sum_, buffer in zip(self.sums, self.buffers, strict=True):
                sum_ += buffer
        self.parts += 1

    def finish(self, all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Set the mean over this process's micro-batches, averaged over processes."""
        if self.average:
            for buffer, sum_ in zip(self.buffers, self.sums, strict=True):
                buffer.copy_(all_reduce_mean(sum_ / self.parts))

    def rollback(self) -> None:
        """Put statistics and counters back as they were before the step (when a snapshot was kept)."""
        if self.snapshot:
            self._restore()

    def _restore(self) -> None:
        for buffer, saved in zip(self.buffers + self.counters, self.snapshot, strict=True):
            buffer.copy_(saved)
