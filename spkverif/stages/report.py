"""The `report` stage: score files + labelled trials -> one table, report.json, report.md and det.png.

Each score file is evaluated against its trial list (one list for all, or one
per score file, in order). Per row: EER with a bootstrap confidence interval,
minDCF at each prior, actual DCF and Cllr (the scores read as LLRs: meaningful
for PLDA, or after `--calibrate`), and a DET curve on a shared plot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from spkverif.backends.calibration import CALIBRATIONS, TrialQuality, fit_calibration_file
from spkverif.backends.snorm import TOP_N, CohortMeans
from spkverif.base.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.tables import iter_lines, parse_number
from spkverif.io.trials import Trials, read_trials
from spkverif.metrics import (
    P_TARGET,
    bootstrap,
    compute_act_dcf,
    compute_cllr,
    det_curve,
    eer_of,
    eer_threshold,
    min_dcf_of,
    min_dcf_threshold,
    operating_points,
)

logger = logging.getLogger(__name__)

DEFAULT_P_TARGETS = (P_TARGET, 0.001, 0.05)


@dataclass
class ScoredTrials:
    scores: np.ndarray
    labels: np.ndarray
    missing: int
    enroll: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    test: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


@dataclass
class ReportSettings:
    """How every row is evaluated."""

    p_targets: tuple[float, ...] = DEFAULT_P_TARGETS
    allow_missing: bool = False
    bootstrap: int = 1000
    seed: int = 0
    utt2spk: str | None = None
    level: float = 0.95


SCORE_LABELS = frozenset({"target", "nontarget", "1", "0"})
"""A fourth field a score file may hold: the trial's label, as WeSpeaker writes `enroll test score target`."""


def read_scores(path: str | Path) -> dict[tuple[str, str], float]:
    """A Kaldi score file `enroll test score`, or WeSpeaker's `enroll test score LABEL`, each line checked.
    The label is not read (the trial list's is); the score is.

    Raises `SpkverifError` at the line for a wrong number of fields, a score that is not
    a finite number (NaN and inf are refused here, so they are never taken for missing
    scores), and a trial scored twice with different scores (a repeated line, as
    `score` writes for a trial listed twice, is the same score and is kept).
    """
    table: dict[tuple[str, str], float] = {}
    lines: dict[tuple[str, str], int] = {}
    for number, fields in iter_lines(path):
        if not (len(fields) == 3 or (len(fields) == 4 and fields[3] in SCORE_LABELS)):
            raise SpkverifError(
                f"expected `enroll test score` (or `enroll test score target|nontarget`), found {len(fields)} fields",
                path,
                number,
            )
        value = parse_number(fields[2], "score", path, number)
        pair = (fields[0], fields[1])
        if pair in table and table[pair] != value:
            raise SpkverifError(
                f"trial {fields[0]} {fields[1]} is scored twice, differently (first on line {lines[pair]})",
                path,
                number,
            )
        if pair in table:
            continue
        table[pair] = value
        lines[pair] = number
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
    listed = set(zip(trials.enroll, trials.test, strict=True))
    extra = [pair for pair in scores if pair not in listed]
    if extra:
        logger.warning(
            "%s: %d of its %d scores are of pairs the trial list %s does not hold (e.g. %s); they are left out",
            path, len(extra), len(scores), trials.path, " ".join(extra[0]),
        )  # fmt: skip
    return ScoredTrials(values[present], labels[present], missing, trials.enroll[present], trials.test[present])


def _speaker_clusters(enroll: np.ndarray, utt2spk_path: str) -> np.ndarray:
    from spkverif.backends.base import read_utt2spk

    utt2spk = read_utt2spk(utt2spk_path)
    unknown = sorted({key for key in enroll if key not in utt2spk})
    if unknown:
        raise SpkverifError(
            f"{len(unknown)} enrolment utterances of the trials have no speaker (e.g. {', '.join(unknown[:3])})",
            utt2spk_path,
        )
    return np.array([utt2spk[key] for key in enroll], dtype=object)


def evaluate(scored: ScoredTrials, settings: ReportSettings, llrs: np.ndarray | None = None) -> dict[str, Any]:
    """Every figure of one row; `llrs` are calibrated scores when there are some, else the scores themselves."""
    points = operating_points(scored.scores, scored.labels)
    llrs = scored.scores if llrs is None else llrs
    result: dict[str, Any] = {
        "trials": len(scored.scores),
        "targets": int(scored.labels.sum()),
        "missing": scored.missing,
        "eer": eer_of(points),
        "eer_threshold": eer_threshold(points),
    }
    for p_target in settings.p_targets:
        result[f"min_dcf_{p_target:g}"] = min_dcf_of(points, p_target)
        threshold = min_dcf_threshold(points, p_target)
        result[f"min_dcf_{p_target:g}_threshold"] = threshold if np.isfinite(threshold) else None  # None: reject all
    for p_target in settings.p_targets:
        result[f"act_dcf_{p_target:g}"] = compute_act_dcf(llrs, scored.labels, p_target)
    result["cllr"] = compute_cllr(llrs, scored.labels)
    if settings.bootstrap > 0:
        clusters = _speaker_clusters(scored.enroll, settings.utt2spk) if settings.utt2spk else None
        interval = bootstrap(
            scored.scores,
            scored.labels,
            settings.p_targets,
            settings.bootstrap,
            settings.seed,
            clusters,
            settings.level,
        )
        result["eer_ci"] = [interval.eer.low, interval.eer.high]
        for p_target, bounds in interval.min_dcf.items():
            result[f"min_dcf_{p_target:g}_ci"] = [bounds.low, bounds.high]
        result["ci"] = {
            "method": "percentile bootstrap",
            "unit": "enrolment speaker" if clusters is not None else "trial (within each class)",
            "replicates": settings.bootstrap,
            "seed": settings.seed,
            "level": settings.level,
        }
    return result


def _per_row(values: list[str] | None, count: int, what: str) -> list[str] | None:
    """One value for every row, or one per row in order."""
    if not values:
        return None
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise SpkverifError(f"{len(values)} {what} for {count} score files: give one, or one per score file")
    return list(values)


def report(
    trials_paths: list[str],
    score_paths: list[str],
    out_dir: str | Path | None = None,
    names: list[str] | None = None,
    settings: ReportSettings | None = None,
    calibration_scores: list[str] | None = None,
    calibration_trials: list[str] | None = None,
    det_path: str | Path | None = None,
    plot: bool = True,
    console: Console | None = None,
    calibration_options: CalibrationOptions | None = None,
) -> list[dict[str, Any]]:
    """Evaluate each score file against its trials; print a table; write report.{json,md} and det.png.

    With `calibration_scores` (held-out score files) and their labelled trials, each
    row is calibrated (`spkverif.backends.calibration`: linear or QMF, as
    `calibration_options` says) before actDCF and Cllr; `calibration_options.save_to`
    writes the fitted calibration for `verify` (one score file only).
    """
    settings = settings or ReportSettings()
    if not score_paths:
        raise SpkverifError("no score files given")
    if names and len(names) != len(score_paths):
        raise SpkverifError(f"{len(names)} --name values for {len(score_paths)} score files")
    row_trials = _per_row(trials_paths, len(score_paths), "--trials lists")
    if row_trials is None:
        raise SpkverifError("no trial list given (--trials)")
    calibration = _per_row(calibration_scores, len(score_paths), "--calibrate score files")
    calibration_lists = _per_row(calibration_trials, len(score_paths), "--calibrate-trials lists")
    if calibration and not calibration_lists:
        raise SpkverifError("--calibrate needs --calibrate-trials: the labelled trials of the held-out scores")
    options = calibration_options or CalibrationOptions()
    options.check(bool(calibration), len(score_paths))
    trial_cache: dict[str, Trials] = {}

    def trials_of(path: str) -> Trials:
        if path not in trial_cache:
            trial_cache[path] = read_trials(path)
        return trial_cache[path]

    rows, curves = [], []
    for position, path in enumerate(score_paths):
        scored = match_scores(trials_of(row_trials[position]), read_scores(path), path, settings.allow_missing)
        name = names[position] if names else _system_name(path)
        row: dict[str, Any] = {"system": name, "scores": str(path), "trials_file": row_trials[position]}
        llrs = None
        if calibration and calibration_lists:
            held_out = match_scores(
                trials_of(calibration_lists[position]), read_scores(calibration[position]), calibration[position], False
            )
            source = {"scores": calibration[position], "trials": calibration_lists[position]}
            fitted = fit_calibration_file(
                options.quality(held_out), held_out.labels, options.method, options.fingerprint, source,
                options.cohort_top_n,
            )  # fmt: skip
            llrs = fitted.llrs(options.quality(scored))
            row["calibration"] = {
                "method": fitted.method,
                "scale": fitted.weights[0],
                "weights": dict(zip(["score", *fitted.measures], fitted.weights, strict=True)),
                "offset": fitted.offset,
                "scores": calibration[position],
            }
            if options.save_to is not None:
                fitted.save(options.save_to)
                row["calibration"]["file"] = str(options.save_to)
        row["calibrated"] = llrs is not None
        row.update(evaluate(scored, settings, llrs))
        rows.append(row)
        curves.append((name, row_trials[position], det_curve(scored.scores, scored.labels)))
    out = Path(out_dir) if out_dir is not None else Path(score_paths[0]).parent
    earlier = [name for name in ("report.json", "report.md", "det.png") if (out / name).exists()]
    if earlier:
        logger.warning("replacing the earlier %s in %s (give --out-dir to keep them)", ", ".join(earlier), out)
    if plot:
        from spkverif.plots.det import LabelledCurve, plot_det

        several_lists = len(set(row_trials)) > 1
        labelled = [LabelledCurve(f"{name} · {trials}" if several_lists else name, c) for name, trials, c in curves]
        written = plot_det(labelled, det_path or out / "det.png", None if several_lists else f"trials: {row_trials[0]}")
        for row in rows:
            row["det"] = str(written)
    runs = summarise_runs(rows, settings.p_targets)
    with atomic_write(out / "report.json") as handle:
        json.dump(rows, handle, indent=2)
        handle.write("\n")
    with atomic_write(out / "report.md") as handle:
        handle.write(markdown_table(rows, settings.p_targets))
        if runs:
            handle.write("\n" + markdown_runs_table(runs, settings.p_targets))
    if runs:
        with atomic_write(out / "runs.json") as handle:
            json.dump(runs, handle, indent=2)
            handle.write("\n")
    (console or _console()).print(rich_table(rows, settings.p_targets))
    if runs:
        (console or _console()).print(rich_runs_table(runs, settings.p_targets))
    written = [out / "report.json", out / "report.md"] + ([out / "runs.json"] if runs else [])
    written += [Path(rows[0]["det"])] if plot else []
    logger.info("wrote %s", ", ".join(str(path) for path in written))
    return rows


def summarise_runs(rows: list[dict[str, Any]], p_targets: tuple[float, ...]) -> list[dict[str, Any]]:
    """The rows that share a system name and a trial list, as runs of one system (seeds):
    for each such group of two or more, the number of runs and the mean, sample standard
    deviation (n - 1), minimum and maximum of its EER and of its minDCF at each prior.
    Groups in the order of their first row; [] when no name repeats."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["trials_file"]), []).append(row)
    summaries = []
    for (system, trials_file), members in groups.items():
        if len(members) < 2:
            continue
        summary: dict[str, Any] = {"system": system, "trials_file": trials_file, "runs": len(members)}
        for key in ["eer", *(f"min_dcf_{p:g}" for p in p_targets)]:
            values = np.array([member[key] for member in members], dtype=float)
            summary[key] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        summaries.append(summary)
    return summaries


def _runs_cells(runs: list[dict[str, Any]], p_targets: tuple[float, ...]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the runs table: EER (%) and minDCF as mean ± sd [min, max]."""
    several_lists = len({run["trials_file"] for run in runs}) > 1
    headers = ["system"] + (["trials list"] if several_lists else []) + ["runs", "EER (%) mean ± sd", "EER range"]
    headers += [f"minDCF({p:g}) mean ± sd" for p in p_targets]
    table = []
    for run in runs:
        eer = run["eer"]
        cells = [run["system"]] + ([run["trials_file"]] if several_lists else []) + [str(run["runs"])]
        cells += [f"{100 * eer['mean']:.2f} ± {100 * eer['sd']:.2f}"]
        cells += [f"[{100 * eer['min']:.2f}, {100 * eer['max']:.2f}]"]
        cells += [f"{run[f'min_dcf_{p:g}']['mean']:.4f} ± {run[f'min_dcf_{p:g}']['sd']:.4f}" for p in p_targets]
        table.append(cells)
    return headers, table


RUNS_NOTE = "Rows sharing a system name, as runs of one system: mean ± sample standard deviation, and the EER's range."


def run(
    scores: Sequence[str],
    trials: Sequence[str],
    out_dir: str | Path | None = None,
    names: Sequence[str] = (),
    settings: ReportSettings | None = None,
    *,
    calibration_scores: Sequence[str] = (),
    calibration_trials: Sequence[str] = (),
    calibration_method: str = "linear",
    durations: Sequence[str] = (),
    embeddings: Sequence[str] = (),
    cohort: str | None = None,
    cohort_utt2spk: str | None = None,
    top_n: int | None = None,
    model_path: Sequence[str] = (),
    save_calibration: str | Path | None = None,
    det_path: str | Path | None = None,
    plot: bool = True,
    training: Sequence[str] = (),
    filters_model: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Everything `spkverif report` makes, each where asked for: the learned filters of a SincNet
    model (`filters_model`: filters.png in `out_dir`, else beside the model), the training curves of
    experiment directories (`training`: training.png in `out_dir`, else in the first), and the
    evaluation of `scores` (`report`, calibrated as `load_calibration_options` reads; QMF's cohort
    takes the `top_n` (default `TOP_N`) highest scores of each side). Returns the rows of `report`."""
    if filters_model:
        from spkverif.plots.filters import plot_filters

        target = (Path(out_dir) if out_dir else Path(filters_model).parent) / "filters.png"
        print(f"learned filters: {plot_filters(filters_model, target)}")
    if training:
        from spkverif.plots.training import plot_training

        target = (Path(out_dir) if out_dir else Path(training[0])) / "training.png"
        print(f"training curves: {plot_training(list(training), target)}")
    if not scores:
        return []
    qmf_cohort = CohortOption(cohort, cohort_utt2spk, TOP_N if top_n is None else top_n) if cohort is not None else None
    options = load_calibration_options(
        calibration_method, list(durations), list(embeddings), list(model_path) or None, save_calibration, qmf_cohort
    )
    return report(
        list(trials),
        list(scores),
        out_dir,
        list(names) or None,
        settings,
        calibration_scores=list(calibration_scores),
        calibration_trials=list(calibration_trials),
        det_path=det_path,
        plot=plot,
        calibration_options=options,
    )


@dataclass
class CalibrationOptions:
    """How `report --calibrate` calibrates: `linear` or `qmf`, and where the fitted calibration goes.

    QMF needs every trial side's duration (`durations`, seconds by utterance, as
    Kaldi's utt2dur) and embedding norm (`norms`, by utterance), and with a cohort
    each side's mean of its top `cohort_top_n` cohort scores (`cohort_means`, by
    utterance); `fingerprint` is the model's (`spkverif.models.files.model_fingerprint`),
    stored so `verify` can refuse a calibration made for another model.
    """

    method: str = "linear"
    durations: dict[str, float] | None = None
    norms: dict[str, float] | None = None
    fingerprint: str = ""
    save_to: str | Path | None = None
    cohort_means: dict[str, float] | None = None
    cohort_top_n: int | None = None

    def check(self, calibrating: bool, rows: int) -> None:
        CALIBRATIONS.get(self.method)
        if (self.method != "linear" or self.save_to is not None) and not calibrating:
            raise SpkverifError("--calibration-method and --save-calibration need --calibrate HELD_OUT_SCORES")
        if self.save_to is not None and rows != 1:
            raise SpkverifError(f"--save-calibration writes one calibration: give one score file, not {rows}")
        if self.save_to is not None and not self.fingerprint:
            raise SpkverifError("--save-calibration needs --model: the calibration is tied to the model that scored")
        if self.cohort_means is not None and self.method == "linear":
            raise SpkverifError("--cohort adds quality measures: it needs --calibration-method qmf")

    def quality(self, scored: ScoredTrials) -> TrialQuality:
        """Scores and, for QMF, the durations and norms of each trial's two sides."""
        if self.method == "linear":
            return TrialQuality(scored.scores)
        cohort = None if self.cohort_means is None else self._sides(self.cohort_means, scored, "--embeddings")
        return TrialQuality(scored.scores, self._sides(self.durations, scored, "--durations"),
                            self._sides(self.norms, scored, "--embeddings"), cohort)  # fmt: skip

    @staticmethod
    def _sides(table: dict[str, float] | None, scored: ScoredTrials, option: str) -> np.ndarray:
        if table is None:
            raise SpkverifError(f"--calibration-method qmf needs {option}")
        sides = []
        for keys in (scored.enroll, scored.test):
            unknown = [key for key in keys if key not in table]
            if unknown:
                raise SpkverifError(f"{len(unknown)} trial utterances are not in {option} (e.g. {unknown[0]!r})")
            sides.append([table[key] for key in keys])
        return np.array(sides, dtype=np.float64).T


def read_durations(path: str | Path) -> dict[str, float]:
    """A Kaldi utt2dur (`utt seconds`), each value checked."""
    table: dict[str, float] = {}
    for number, fields in iter_lines(path):
        try:
            if len(fields) != 2:
                raise ValueError
            table[fields[0]] = float(fields[1])
        except ValueError:
            raise SpkverifError("expected `utterance seconds`", path, number) from None
    return table


@dataclass(frozen=True)
class CohortOption:
    """QMF's cohort: an rspecifier, optionally an utt2spk to average it per speaker, and top N."""

    rspecifier: str
    utt2spk: str | None = None
    top_n: int = TOP_N


def load_calibration_options(
    method: str,
    durations: list[str],
    embeddings: list[str],
    model_path: str | Sequence[str] | None,
    save_to: str | None,
    cohort: CohortOption | None = None,
) -> CalibrationOptions:
    """Read what `report --calibrate` needs: utt2dur files, embedding rspecifiers (norms and, with
    `cohort`, each embedding's mean top-N cohort score), the model's fingerprint (of an ensemble's, for
    several model files)."""
    from spkverif.io.specifiers import load_vectors

    options = CalibrationOptions(method=method, save_to=save_to)
    if durations:
        options.durations = {key: value for path in durations for key, value in read_durations(path).items()}
    if cohort is not None and not embeddings:
        raise SpkverifError("--cohort needs --embeddings: the cohort means are of the trials' embeddings")
    means = CohortMeans(cohort.rspecifier, cohort.utt2spk, cohort.top_n) if cohort is not None else None
    if embeddings:
        options.norms = {}
        options.cohort_means = {} if means is not None else None
        for rspecifier in embeddings:
            keys, vectors = load_vectors(rspecifier)
            options.norms.update(zip(keys, np.linalg.norm(vectors.astype(np.float64), axis=1).tolist(), strict=True))
            if means is not None and options.cohort_means is not None:
                options.cohort_means.update(zip(keys, means(vectors).tolist(), strict=True))
        options.cohort_top_n = means.top_n if means is not None else None
    if model_path is not None:
        from spkverif.runtime import open_models

        options.fingerprint = open_models(model_path, "cpu").fingerprint
    return options


def _console() -> Console:
    """The terminal's width on a terminal; wide enough for the whole table in a log file or pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _system_name(path: str | Path) -> str:
    """`exp/aam/scores/test.cosine` -> `aam test.cosine`: the experiment and the file."""
    path = Path(path)
    if path.parent.name == "scores" and path.parent.parent.name:
        return f"{path.parent.parent.name} {path.name}"
    return str(path)


def _cells(rows: list[dict[str, Any]], p_targets: tuple[float, ...]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells shared by the terminal and markdown tables."""
    several_lists = len({row["trials_file"] for row in rows}) > 1
    with_ci = any("eer_ci" in row for row in rows)
    with_missing = any(row["missing"] for row in rows)
    level = next((row["ci"]["level"] for row in rows if "ci" in row), 0.95)
    headers = ["system"] + (["trials list"] if several_lists else []) + ["EER (%)"]
    headers += [f"{100 * level:g}% CI"] if with_ci else []
    raw = not all(row.get("calibrated") for row in rows)
    mark = RAW_MARK if raw else ""
    headers += ["EER thr."] + [f"minDCF({p:g})" for p in p_targets] + [f"minDCF({p_targets[0]:g}) thr."]
    headers += [f"actDCF({p_targets[0]:g}){mark}", f"Cllr{mark}", "trials"]
    headers += ["missing"] if with_missing else []
    table = []
    for row in rows:
        system = row["system"] + (" (calibrated)" if row.get("calibrated") else "")
        cells = [system] + ([row["trials_file"]] if several_lists else []) + [f"{100 * row['eer']:.2f}"]
        if with_ci:
            low, high = row.get("eer_ci", [np.nan, np.nan])
            cells.append(f"[{100 * low:.2f}, {100 * high:.2f}]")
        cells.append(f"{row['eer_threshold']:.6g}")
        cells += [f"{row[f'min_dcf_{p:g}']:.4f}" for p in p_targets]
        dcf_threshold = row[f"min_dcf_{p_targets[0]:g}_threshold"]
        cells.append("reject all" if dcf_threshold is None else f"{dcf_threshold:.6g}")
        cells += [f"{row[f'act_dcf_{p_targets[0]:g}']:.4f}", f"{row['cllr']:.4f}", str(row["trials"])]
        cells += [str(row["missing"])] if with_missing else []
        table.append(cells)
    return headers, table


RAW_MARK = "*"
RAW_NOTE = (
    "* actDCF and Cllr read the scores as log-likelihood ratios: they mean something for calibrated scores "
    "(--calibrate, or PLDA's LLRs) only."
)
THRESHOLD_NOTE = "Thresholds (thr.): accept a trial whose score is at or above this."


def _note(rows: list[dict[str, Any]]) -> str:
    """The footnote under a table: what the thresholds are, and (with raw rows) what actDCF and Cllr need."""
    if all(row.get("calibrated") for row in rows):
        return THRESHOLD_NOTE
    return f"{RAW_NOTE} {THRESHOLD_NOTE}"


def _rich(headers: list[str], cells: list[list[str]], title: str | None, caption: str) -> Table:
    table = Table(title=title, caption=caption)
    for position, header in enumerate(headers):
        table.add_column(header, justify="left" if position == 0 else "right")
    for row in cells:
        table.add_row(*row)
    return table


def _markdown(headers: list[str], cells: list[list[str]], note: str) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n\n" + note + "\n"


def rich_table(rows: list[dict[str, Any]], p_targets: tuple[float, ...]) -> Table:
    lists = sorted({row["trials_file"] for row in rows})
    return _rich(*_cells(rows, p_targets), f"trials: {lists[0]}" if len(lists) == 1 else None, _note(rows))


def markdown_table(rows: list[dict[str, Any]], p_targets: tuple[float, ...]) -> str:
    return _markdown(*_cells(rows, p_targets), _note(rows))


def rich_runs_table(runs: list[dict[str, Any]], p_targets: tuple[float, ...]) -> Table:
    return _rich(*_runs_cells(runs, p_targets), "runs of one system", RUNS_NOTE)


def markdown_runs_table(runs: list[dict[str, Any]], p_targets: tuple[float, ...]) -> str:
    return _markdown(*_runs_cells(runs, p_targets), RUNS_NOTE)
