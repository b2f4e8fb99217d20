"""What every side-by-side benchmark shares: interleaved timing rounds, peak memory, rows, the machine line.

A figure is measured by `interleaved`: every contestant runs once untimed (the
warm-up), then `rounds` times in turn (A, B, C, A, B, C, ...), so a slow spell
of a shared machine falls on all of them alike; the median of each counts.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the results table: a figure, our value, the peer's, and which way is better.

    `ratio` is how many times better spkverif is (peer / ours when lower is better,
    ours / peer when higher is better); None when there is no peer value.
    """

    figure: str
    unit: str
    ours: float
    peer_name: str = ""
    peer: float | None = None
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.peer is None:
            return None
        if self.higher_is_better:
            return self.ours / self.peer
        return self.peer / self.ours


@dataclass
class Section:
    """The rows of one benchmark, plus free lines (values side by side, skipped peers and why)."""

    title: str
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def interleaved(contestants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each contestant over `rounds` interleaved calls, after `warmup` untimed ones each."""
    for _ in range(warmup):
        for function in contestants.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, function in contestants.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """CPU model, cores, torch threads, torch/numpy versions and BLAS libraries, load average."""
    import numpy as np
    import torch

    blas = ""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{info.get('internal_api')} {info.get('version')} ({info.get('num_threads')} threads)"
            for info in threadpool_info()
        )
    except ImportError:
        blas = "threadpoolctl absent"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"{'oneDNN' if torch.backends.mkldnn.is_available() else 'no oneDNN'}), numpy {np.__version__}, "
        f"Python {platform.python_version()}; BLAS: {blas}; load average {load}"
    )


def finite_positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}"


def table(sections: list[Section]) -> str:
    """The markdown table of every row, then each section's free lines."""
    lines = ["| figure | spkverif | peer | peer value | ratio (× better) |", "|---|---:|---|---:|---:|"]
    for section in sections:
        for row in section.rows:
            ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
            lines.append(
                f"| {section.title}: {row.figure} | {format_value(row.ours, row.unit)} | {row.peer_name or '—'} | "
                f"{format_value(row.peer, row.unit)} | {ratio} |"
            )
    for section in sections:
        if section.lines:
            lines += ["", f"**{section.title}**", ""]
            lines += [f"- {line}" for line in section.lines]
    return "\n".join(lines)
