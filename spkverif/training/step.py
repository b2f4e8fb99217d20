"""One optimiser step over a process's micro-batches, as a few short hooks.

SpeechBrain's `Brain` splits a step the same way (`fit_batch`,
`check_loss_isfinite`, `optimizers_step`). The order of operations is part of
a run's identity: per micro-batch, seed torch from (seed, epoch, step, part),
forward under autocast, agree across processes that the loss is finite, backward
(gradients synchronised on the last micro-batch only); then the BatchNorm
statistics' mean, clipping, the optimiser through the grad scaler, the
learning-rate schedule and the loss head's own state.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.config import TrainConfig
from spkverif.training.batchnorm import BatchNormStep
from spkverif.training.build import Components
from spkverif.training.checkpoint import Checkpointer
from spkverif.training.dataset import Batch
from spkverif.training.distributed import DistributedContext
from spkverif.training.log import Progress

logger = logging.getLogger(__name__)

StepResult = tuple[float, float | None] | None
"""(mean loss, accuracy or None) of a step, or None for a step skipped as non-finite."""


def micro_batch_seed(seed: int, epoch: int, step: int, part: int) -> int:
    """The torch seed of one micro-batch (dither, SpecAugment, dropout): the same in any process."""
    return int(np.random.SeedSequence([seed, epoch, step, part, 2]).generate_state(1)[0])


class TrainStep:
    """Calls to this run one step each; `progress` and `checkpointer` name the place in a non-finite loss's error."""

    def __init__(
        self,
        config: TrainConfig,
        parts: Components,
        context: DistributedContext,
        progress: Progress,
        checkpointer: Checkpointer,
    ):
        self.seed = config.seed
        self.options = config.training
        self.parts = parts
        self.context = context
        self.progress = progress
        self.checkpointer = checkpointer

    def __call__(self, batches: list[Batch]) -> StepResult:
        """One optimiser step over this rank's micro-batches; None when skipped as non-finite."""
        self.parts.freezer.before_step(self.progress.global_step)
        average = self.options.grad_accum > 1 or self.context.enabled
        batchnorm = BatchNormStep(self.parts.network, average, keep=average or self.options.skip_nonfinite)
        self.parts.optimizer.zero_grad(set_to_none=True)
        losses, correct, total = [], 0, 0
        for position, batch in enumerate(batches):
            batchnorm.before_part()
            fitted = self.fit_batch(batch, len(batches), position == len(batches) - 1, batchnorm)
            if fitted is None:
                return None
            loss, logits, labels = fitted
            losses.append(loss.item())
            if logits is not None:
                correct += int((logits.argmax(dim=1) == labels).sum().item())
                total += len(labels)
            batchnorm.after_part()
        batchnorm.finish(self.context.all_reduce_mean)
        self.parts.freezer.after_backward()
        self.optimizer_step()
        return self._step_statistics(losses, correct, total)

    def fit_batch(
        self, batch: Batch, count: int, last: bool, batchnorm: BatchNormStep
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None:
        """Forward and backward of one micro-batch of `count` in the step, gradients synchronised
        across processes on the `last`; (loss, logits, labels), or None for a non-finite loss."""
        torch.manual_seed(micro_batch_seed(self.seed, batch.epoch, batch.step, batch.part))
        inputs = batch.inputs.to(self.context.device, non_blocking=True)
        labels = batch.labels.to(self.context.device, non_blocking=True)
        ddp = self.parts.ddp
        sync = contextlib.nullcontext() if last or not self.context.enabled else ddp.no_sync()  # type: ignore[operator]
        amp_dtype = self.parts.amp_dtype
        with sync:
            with torch.autocast(
                self.context.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                loss, logits = ddp(inputs, labels)
            if not self.check_loss_isfinite(loss, batchnorm):
                return None
            self.parts.scaler.scale(loss / count).backward()
        return loss, logits, labels

    def check_loss_isfinite(self, loss: torch.Tensor, batchnorm: BatchNormStep) -> bool:
        """True when the loss is finite in every process (one all-reduce). Otherwise the step is
        undone (BatchNorm statistics, the head's pending state) and, with --skip-nonfinite,
        skipped (False); without it `SpkverifError` names the last good checkpoint."""
        if self.context.all_true(bool(torch.isfinite(loss).item())):
            return True
        batchnorm.rollback()
        self.parts.head.abandon_step()
        progress = self.progress
        if not self.options.skip_nonfinite:
            raise SpkverifError(
                f"the loss became {loss.item()} at epoch {progress.epoch + 1}, step {progress.step + 1}; "
                f"the last good checkpoint is {self.checkpointer.latest() or '(none yet)'} "
                "(pass --skip-nonfinite to skip such steps)"
            )
        self.parts.optimizer.zero_grad(set_to_none=True)
        logger.warning(
            "skipping step %d of epoch %d: the loss is %s", progress.step + 1, progress.epoch + 1, loss.item()
        )
        return False

    def optimizer_step(self) -> None:
        """Clip (with training.max_grad_norm), step the optimiser through the grad scaler, then the
        learning-rate schedule and the loss head's own state (summed over processes)."""
        parts, max_norm = self.parts, self.options.max_grad_norm
        if max_norm > 0:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(parts.network.parameters(), max_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        parts.head.finish_step(lambda tensor: self.context.all_reduce_mean(tensor) * self.context.world_size)

    def _step_statistics(self, losses: list[float], correct: int, total: int) -> tuple[float, float | None]:
        """Mean loss and accuracy of the step over every process."""
        statistics = torch.tensor([float(np.mean(losses)), float(correct), float(total)], device=self.context.device)
        statistics = self.context.all_reduce_mean(statistics)
        accuracy = statistics[1].item() / statistics[2].item() if statistics[2].item() > 0 else None
        return statistics[0].item(), accuracy
