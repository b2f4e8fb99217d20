"""Training curves from an experiment's train_log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from spkverif.base.errors import SpkverifError
from spkverif.io.tables import read_text_lines
from spkverif.plots import save_figure

_PANELS = (
    ("loss", "loss (per logged step)", "step"),
    ("loss", "loss (epoch mean)", "epoch"),
    ("accuracy", "training accuracy", "epoch"),
    ("lr", "learning rate", "step"),
    ("margin", "margin", "step"),
    ("eer", "validation EER", "valid"),
    ("samples_per_s", "samples / s", "step"),
)


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        raise SpkverifError("no training log (train_log.jsonl) here", path.parent)
    records = []
    for number, line in read_text_lines(path):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise SpkverifError("not a JSON record", path, number) from None
    return records


def plot_training(exp_dirs: list[str | Path], out: str | Path) -> Path:
    """One figure, a panel per quantity present, one line per experiment."""
    logs = {Path(d).name or str(d): read_log(Path(d) / "train_log.jsonl") for d in exp_dirs}
    panels = [
        panel
        for panel in _PANELS
        if any(r.get("event") == panel[2] and r.get(panel[0]) is not None for log in logs.values() for r in log)
    ]
    if not panels:
        raise SpkverifError("the training log holds no steps yet", exp_dirs[0])
    columns = 2
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(11, 3.2 * rows), squeeze=False)
    for axis, (key, title, event) in zip(axes.flat, panels, strict=False):
        for name, log in logs.items():
            points = [(r["global_step"], r[key]) for r in log if r.get("event") == event and r.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(
                    xs, [100 * y for y in ys] if key == "eer" else ys, marker="." if len(xs) < 50 else None, label=name
                )
        axis.set_title(title + (" (%)" if key == "eer" else ""))
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if key == "lr":
            axis.set_yscale("log")
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes.flat[0].legend()
    figure.tight_layout()
    return save_figure(figure, out)
