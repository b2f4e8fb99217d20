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
    `flops` and `peer_flops`: floating-point operations per unit of a rate's figure (a
    sample of samples/s, a second of audio of × real time), counted (bench/flops.py);
    the table's limit columns multiply them by the rates.
    """

    figure: str
    unit: str
    ours: float
    peer_name: str = ""
    peer: float | None = None
    higher_is_better: bool = False
    note: str = ""
    flops: float | None = None
    peer_flops: float | None = None

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


PEER_PACKAGES = ("speechbrain", "onnxruntime", "torchaudio", "torchcodec", "kaldi-native-fbank", "resemblyzer")


def peer_versions() -> str:
    """The peers' package versions, and the WeSpeaker, 3D-Speaker and IDRnD checkouts as bench/run.sh names them."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in PEER_PACKAGES:
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    checkouts = os.environ.get("SPKVERIF_BENCH_CHECKOUTS", "WeSpeaker, 3D-Speaker and IDRnD as PYTHONPATH finds them")
    return ", ".join(found) + f"; {checkouts}"


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


TABLE_HEADER = (
    "| figure | spkverif | peer | peer value | ratio (× better) | GFLOP a unit (ours / peer) "
    "| GFLOP/s (ours / peer) | of peak (ours / peer) |"
)


def _pair(ours: float | None, peer: float | None, text: Callable[[float], str]) -> str:
    if ours is None and peer is None:
        return "—"
    return " / ".join("—" if value is None else text(value) for value in (ours, peer))


def limit_cells(row: Row, peak: float | None) -> list[str]:
    """The limit columns of a rate's row: GFLOP per unit, achieved GFLOP/s, fraction of `peak` GFLOP/s."""
    rates = (row.ours, row.peer)
    flops = (row.flops, row.peer_flops)
    achieved = [
        None if count is None or rate is None or not row.higher_is_better else count * rate / 1e9
        for count, rate in zip(flops, rates, strict=True)
    ]
    fractions = [None if value is None or not peak else value / peak for value in achieved]
    return [
        _pair(*(None if count is None else count / 1e9 for count in flops), lambda value: f"{value:.3g}"),
        _pair(*achieved, lambda value: f"{value:.3g}"),
        _pair(*fractions, lambda value: f"{value:.1%}"),
    ]


def table(sections: list[Section], peak: float | None = None) -> str:
    """The markdown table of every row (with the limit columns against `peak` GFLOP/s), then each section's lines."""
    lines = [TABLE_HEADER, "|---|---:|---|---:|---:|---:|---:|---:|"]
    for section in sections:
        for row in section.rows:
            ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
            limits = " | ".join(limit_cells(row, peak))
            lines.append(
                f"| {section.title}: {row.figure} | {format_value(row.ours, row.unit)} | {row.peer_name or '—'} | "
                f"{format_value(row.peer, row.unit)} | {ratio} | {limits} |"
            )
    for section in sections:
        if section.lines:
            lines += ["", f"**{section.title}**", ""]
            lines += [f"- {line}" for line in section.lines]
    return "\n".join(lines)
