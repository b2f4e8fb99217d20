"""The `report` stage: score files + labelled trials -> a table, report.json and report.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.tables import iter_lines
from spkverif.io.trials import Trials, read_trials
from spkverif.metrics import compute_eer, compute_min_dcf


@dataclass
class ScoredTrials:
    scores: np.ndarray
    labels: np.ndarray
    missing: int


def read_scores(path: str | Path) -> dict[tuple[str, str], float]:
    """A Kaldi score file `enroll test score`, each line checked."""
    table: dict[tuple[str, str], float] = {}
    for number, fields in iter_lines(path):
        if len(fields) != 3:
            raise SpkverifError("expected `enroll test score`", path, number)
        try:
            value = float(fields[2])
        except ValueError:
            raise SpkverifError(f"score {fields[2]!r} is not a number", path, number) from None
        table[(fields[0], fields[1])] = value
    if not table:
        raise SpkverifError("the score file is empty", path)
    return table


def match_scores(
    trials: Trials, scores: dict[tuple[str, str], float], path: str | Path, allow_missing: bool
) -> ScoredTrials:
    labels = trials.require_labels()
    values = np.array([scores.get((e, t), np.nan) for e, t in zip(trials.enroll, trials.test, strict=False)])
    present = ~np.isnan(values)
    missing = int((~present).sum())
    if missing and not allow_missing:
        line = int(trials.lines[np.flatnonzero(~present)[0]])
        raise SpkverifError(
            f"{missing} trials have no score in {path} (the first is line {line} of the trials); "
            "pass --allow-missing to evaluate the rest",
            trials.path,
        )
    return ScoredTrials(values[present], labels[present], missing)


def evaluate(scored: ScoredTrials, p_targets: tuple[float, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "trials": len(scored.scores),
        "targets": int(scored.labels.sum()),
        "missing": scored.missing,
        "eer": compute_eer(scored.scores, scored.labels),
    }
    for p_target in p_targets:
        result[f"min_dcf_{p_target:g}"] = compute_min_dcf(scored.scores, scored.labels, p_target)
    return result


def report(
    trials_path: str | Path,
    score_paths: list[str],
    out_dir: str | Path | None = None,
    names: list[str] | None = None,
    p_targets: tuple[float, ...] = (0.01, 0.001),
    allow_missing: bool = False,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Evaluate each score file against the trials, print a table, write report.{json,md}."""
    if not score_paths:
        raise SpkverifError("no score files given")
    if names and len(names) != len(score_paths):
        raise SpkverifError(f"{len(names)} --name values for {len(score_paths)} score files")
    trials = read_trials(trials_path)
    rows = []
    for position, path in enumerate(score_paths):
        scored = match_scores(trials, read_scores(path), path, allow_missing)
        name = names[position] if names else _system_name(path)
        rows.append(
            {"system": name, "scores": str(path), "trials_file": str(trials_path), **evaluate(scored, p_targets)}
        )
    out = Path(out_dir) if out_dir is not None else Path(score_paths[0]).parent
    with atomic_write(out / "report.json") as handle:
        json.dump(rows, handle, indent=2)
        handle.write("\n")
    with atomic_write(out / "report.md") as handle:
        handle.write(markdown_table(rows, p_targets))
    (console or Console()).print(rich_table(rows, p_targets, str(trials_path)))
    return rows


def _system_name(path: str | Path) -> str:
    """`exp/aam/scores/test.cosine` -> `aam test.cosine`: the experiment and the file."""
    path = Path(path)
    if path.parent.name == "scores" and path.parent.parent.name:
        return f"{path.parent.parent.name} {path.name}"
    return str(path)


def _columns(p_targets: tuple[float, ...]) -> list[tuple[str, str]]:
    return [("eer", "EER (%)")] + [(f"min_dcf_{p:g}", f"minDCF({p:g})") for p in p_targets]


def _format(key: str, value: float) -> str:
    return f"{100 * value:.2f}" if key == "eer" else f"{value:.4f}"


def rich_table(rows: list[dict[str, Any]], p_targets: tuple[float, ...], title: str) -> Table:
    table = Table(title=f"trials: {title}")
    table.add_column("system")
    for _, header in _columns(p_targets):
        table.add_column(header, justify="right")
    table.add_column("trials", justify="right")
    for row in rows:
        table.add_row(row["system"], *(_format(k, row[k]) for k, _ in _columns(p_targets)), str(row["trials"]))
    return table


def markdown_table(rows: list[dict[str, Any]], p_targets: tuple[float, ...]) -> str:
    headers = ["system"] + [header for _, header in _columns(p_targets)] + ["trials"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row["system"]] + [_format(k, row[k]) for k, _ in _columns(p_targets)] + [str(row["trials"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
