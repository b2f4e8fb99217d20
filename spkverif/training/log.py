"""The training log (`train_log.jsonl`) and the figures it records: where training stands,
running means over an epoch, and throughput over a window of steps.

One JSON record a line: `start` (what is trained on what), `step` (every
`training.log_every` steps and at the end of an epoch), `epoch`, `valid`. Every
record carries `global_step`, so a resumed run cuts the log back to its checkpoint
and never mixes two runs (`spkverif report --curves` draws it).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkverif.io.atomic import atomic_write


class TrainingLog:
    """Appends JSON records to `path`; a log that is not `enabled` (ranks other than 0) writes nothing."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def start(self, record: dict[str, Any]) -> None:
        """Begin a new log with `record`, dropping any older one."""
        if self.enabled:
            self.path.unlink(missing_ok=True)
            self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def truncate(self, global_step: int) -> None:
        """Keep only the records up to `global_step` (a resumed run's checkpoint), atomically."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("global_step", 0) <= global_step]
        with atomic_write(self.path) as handle:
            handle.writelines(line + "\n" for line in kept)

    def records(self) -> list[dict[str, Any]]:
        """Every record, in order (blank lines skipped)."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@dataclass
class RunningMean:
    """A weighted mean built one value at a time; NaN before the first."""

    total: float = 0.0
    count: int = 0

    def add(self, value: float, weight: int = 1) -> None:
        self.total += value * weight
        self.count += weight

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class Progress:
    """Where training stands, saved in every checkpoint as `epoch`, `step`, `best_eer`
    and `epoch_means` (the epoch's running loss and accuracy and its skipped steps)."""

    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    best_eer: float = math.inf
    loss_mean: RunningMean = field(default_factory=RunningMean)
    accuracy_mean: RunningMean = field(default_factory=RunningMean)
    skipped: int = 0

    KEYS = ("epoch", "step", "best_eer", "epoch_means")

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def start_epoch(self) -> None:
        """Fresh running means, unless resuming in the middle of the epoch."""
        if self.step == 0:
            self.loss_mean, self.accuracy_mean, self.skipped = RunningMean(), RunningMean(), 0

    @property
    def accuracy(self) -> float | None:
        """The epoch's running accuracy, None for a loss without logits."""
        return self.accuracy_mean.value if self.accuracy_mean.count else None

    def step_record(
        self, loss: float | None, lr: float, margin: dict[str, float], figures: tuple[float, float]
    ) -> dict[str, Any]:
        """The log's record of the step just taken (`figures`: samples/s and data-wait fraction)."""
        return {
            "event": "step", "epoch": self.epoch + 1, "step": self.step, "global_step": self.global_step,
            "loss": loss, "loss_avg": self.loss_mean.value, "accuracy": self.accuracy, "lr": lr, **margin,
            "samples_per_s": figures[0], "data_wait_fraction": figures[1], "skipped_nonfinite": self.skipped,
        }  # fmt: skip

    def epoch_record(self, lr: float, seconds: float) -> dict[str, Any]:
        """The log's record of the epoch just finished (`epoch` already counts it)."""
        return {
            "event": "epoch", "epoch": self.epoch, "global_step": self.global_step, "loss": self.loss_mean.value,
            "accuracy": self.accuracy, "lr": lr, "seconds": seconds, "skipped_nonfinite": self.skipped,
        }  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        means = [vars(self.loss_mean), vars(self.accuracy_mean), self.skipped]
        return {"epoch": self.epoch, "step": self.step, "best_eer": self.best_eer, "epoch_means": means}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step, self.best_eer = state["epoch"], state["step"], state["best_eer"]
        loss_mean, accuracy_mean, self.skipped = state["epoch_means"]
        self.loss_mean, self.accuracy_mean = RunningMean(**loss_mean), RunningMean(**accuracy_mean)


class Throughput:
    """Samples a second and the fraction of time spent waiting for data, over a window of steps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start, self.wait, self.samples = time.monotonic(), 0.0, 0

    def waited(self, seconds: float) -> None:
        self.wait += seconds

    def figures(self) -> tuple[float, float]:
        """(samples per second, data-wait fraction) since the window began."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return self.samples / elapsed, self.wait / elapsed
