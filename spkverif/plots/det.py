"""DET curves: miss rate against false-alarm rate on normal-deviate axes, several systems per figure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

from spkverif.io.atomic import atomic_write
from spkverif.metrics import DetCurve

TICKS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


@dataclass
class LabelledCurve:
    label: str
    curve: DetCurve


def _thin(x: np.ndarray, y: np.ndarray, step: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Keep a point only where it moves to another `step`-sized cell (in deviates): a million trials plot as a
    few thousand points that draw the same line."""
    cells = np.stack([np.round(x / step), np.round(y / step)], axis=1)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = np.any(cells[1:] != cells[:-1], axis=1)
    keep[-1] = True
    return x[keep], y[keep]


def _limits(curves: list[LabelledCurve]) -> tuple[float, float]:
    """From just below the smallest non-zero error rate of any system (at least 0.01%) to 60%."""
    smallest = min(float(np.min(rates[rates > 0], initial=1.0)) for c in curves for rates in (c.curve.fnr, c.curve.fpr))
    low = max(TICKS[0], smallest / 2)
    return low, 0.6


def plot_det(curves: list[LabelledCurve], path: str | Path, title: str | None = None) -> Path:
    """Write a PNG with one DET curve per system and its EER point marked; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    low, high = _limits(curves)
    figure = Figure(figsize=(6.4, 6.4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for labelled in curves:
        curve = labelled.curve
        x = norm.ppf(np.clip(curve.fpr, low / 10, 1 - 1e-9))
        y = norm.ppf(np.clip(curve.fnr, low / 10, 1 - 1e-9))
        x, y = _thin(x, y)
        (line,) = axes.plot(x, y, label=f"{labelled.label} (EER {100 * curve.eer:.2f}%)", linewidth=1.5)
        point = norm.ppf(np.clip(curve.eer, low / 10, 1 - 1e-9))
        axes.plot([point], [point], marker="o", markersize=6, color=line.get_color(), markeredgecolor="black")
    ticks = [t for t in TICKS if low <= t <= high]
    labels = [f"{100 * t:g}" for t in ticks]
    for setter_ticks, setter_labels, setter_limits in (
        (axes.set_xticks, axes.set_xticklabels, axes.set_xlim),
        (axes.set_yticks, axes.set_yticklabels, axes.set_ylim),
    ):
        setter_ticks(norm.ppf(ticks))
        setter_labels(labels)
        setter_limits(norm.ppf(low), norm.ppf(high))
    axes.plot(norm.ppf([low, high]), norm.ppf([low, high]), color="grey", linewidth=0.6, linestyle=":")
    axes.set_xlabel("false-alarm rate (%)")
    axes.set_ylabel("miss rate (%)")
    axes.grid(True, linewidth=0.4, alpha=0.6)
    axes.legend(loc="upper right", fontsize="small")
    if title:
        axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path
