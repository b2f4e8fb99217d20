"""Progress display for long work: a rich bar with rate and ETA on a terminal,
periodic log lines elsewhere (recipes piped to a log), nothing with --quiet; and the
summary of the problems a long job met (`warn_about`).

Everything goes to stderr so that `ark:-` output on stdout stays clean.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

logger = logging.getLogger("spkverif")

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


def _format_fields(fields: dict[str, float | str]) -> str:
    parts = []
    for name, value in fields.items():
        parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


class ProgressBar:
    """`with ProgressBar(total, "extract", unit="utt") as bar: bar.advance(1, loss=0.3)`."""

    def __init__(self, total: int | None, description: str, unit: str = "it", log_every_seconds: float = 30.0):
        self.total = total
        self.description = description
        self.unit = unit
        self.log_every_seconds = log_every_seconds
        self.completed = 0
        self.fields: dict[str, float | str] = {}
        self._progress: Progress | None = None
        self._task = None
        self._start = time.monotonic()
        self._last_log = self._start

    def __enter__(self) -> ProgressBar:
        self._start = self._last_log = time.monotonic()
        if not _quiet and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(self.unit),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, amount: int = 1, **fields: float | str) -> None:
        self.completed += amount
        self.fields.update(fields)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=amount, info=_format_fields(self.fields))
        elif not _quiet:
            now = time.monotonic()
            if now - self._last_log >= self.log_every_seconds:
                self._last_log = now
                logger.info(self.summary())

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.completed / elapsed
        text = f"{self.description}: {self.completed}"
        if self.total:
            remaining = (self.total - self.completed) / rate if rate > 0 else float("inf")
            eta = "?" if remaining == float("inf") else time.strftime("%H:%M:%S", time.gmtime(remaining))
            text += f"/{self.total} ({100 * self.completed / self.total:.0f}%), ETA {eta}"
        text += f", {rate:,.1f} {self.unit}/s"
        if self.fields:
            text += ", " + _format_fields(self.fields)
        return text

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif not _quiet and exc_type is None:
            logger.info(self.summary())


SHOWN_PROBLEMS = 10


def warn_about(problems: Sequence[str], summary: str, what: str) -> None:
    """Log the first few problems and how many there were in all."""
    for problem in problems[:SHOWN_PROBLEMS]:
        logger.warning("%s: %s", what, problem)
    if problems:
        more = f" ({len(problems) - SHOWN_PROBLEMS} more not shown)" if len(problems) > SHOWN_PROBLEMS else ""
        logger.warning("%d %s%s", len(problems), summary, more)
