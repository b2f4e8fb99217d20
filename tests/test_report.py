"""The report stage: one table over several score files and trial lists, intervals, calibration, DET plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spkverif.metrics import compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf, det_curve, fit_calibration
from spkverif.plots.det import LabelledCurve, plot_det


def _write_set(directory: Path, name: str, seed: int, separation: float, n: int = 400) -> tuple[Path, Path]:
    """A labelled trial list of n trials over 20 speakers, and a score file for it."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = rng.normal(size=n) + separation * labels
    rows = [
        (f"spk{i % 20:02d}-e{i}", f"spk{i % 20:02d}-t{i}" if labels[i] else f"spk{(i + 1) % 20:02d}-t{i}")
        for i in range(n)
    ]
    trials, score_file = directory / f"{name}.trials", directory / f"{name}.scores"
    trials.write_text(
        "".join(f"{e} {t} {'target' if lab else 'nontarget'}\n" for (e, t), lab in zip(rows, labels, strict=True))
    )
    score_file.write_text("".join(f"{e} {t} {s:.6f}\n" for (e, t), s in zip(rows, scores, strict=True)))
    return trials, score_file


def _read(trials: Path, scores: Path) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([line.split()[2] == "target" for line in trials.read_text().splitlines()])
    values = np.array([float(line.split()[2]) for line in scores.read_text().splitlines()])
    return values, labels


def test_one_table_over_score_files_and_trial_lists(run_cli, tmp_path: Path) -> None:
    first_trials, first_scores = _write_set(tmp_path, "o", 0, 2.0)
    second_trials, second_scores = _write_set(tmp_path, "h", 1, 1.0)
    out = tmp_path / "out"
    result = run_cli(
        "report", "--trials", first_trials, "--trials", second_trials, "--name", "O", "--name", "H",
        "--bootstrap", "200", "--out-dir", out, first_scores, second_scores,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "report.json").read_text())
    assert [row["system"] for row in rows] == ["O", "H"]
    for row, (trials, scores) in zip(rows, [(first_trials, first_scores), (second_trials, second_scores)], strict=True):
        values, labels = _read(trials, scores)
        assert row["trials_file"] == str(trials)
        assert row["eer"] == pytest.approx(compute_eer(values, labels), abs=1e-12)
        for p_target in (0.01, 0.001, 0.05):
            assert row[f"min_dcf_{p_target:g}"] == pytest.approx(compute_min_dcf(values, labels, p_target), abs=1e-12)
        assert row["cllr"] == pytest.approx(compute_cllr(values, labels))
        assert row["eer_ci"][0] < row["eer"] < row["eer_ci"][1]
        assert row["ci"]["unit"] == "trial (within each class)" and row["ci"]["replicates"] == 200
        assert row["det"] == str(out / "det.png")
    markdown = (out / "report.md").read_text()
    assert "| O | " in markdown and "| H | " in markdown and "trials list" in markdown
    assert (out / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again"
    run_cli(
        "report", "-q", "--trials", first_trials, "--bootstrap", "200", "--no-det", "--out-dir", again, first_scores
    )
    assert json.loads((again / "report.json").read_text())[0]["eer_ci"] == rows[0]["eer_ci"]
    assert not (again / "det.png").exists()


def test_rows_sharing_a_name_are_summarised_as_runs(run_cli, tmp_path: Path) -> None:
    """Three seeds of one system and one of another on one list: runs.json and report.md's second
    table hold the three's mean, sample sd and range of EER and minDCF; a lone row is no group."""
    trials, _ = _write_set(tmp_path, "list", 0, 1.0)
    pairs = [line.split() for line in trials.read_text().splitlines()]
    scored = []
    for seed in range(4):  # one list, four score files
        rng = np.random.default_rng(seed)
        path = tmp_path / f"seed{seed}.scores"
        path.write_text("".join(f"{e} {t} {rng.normal() + 1.5 * (label == 'target'):.6f}\n" for e, t, label in pairs))
        scored.append((trials, path))
    out = tmp_path / "out"
    result = run_cli(
        "report", "-q", "--trials", trials, "--bootstrap", "0", "--no-det", "--out-dir", out,
        "--name", "aam", "--name", "aam", "--name", "softmax", "--name", "aam", *(path for _, path in scored),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "runs.json").read_text())
    assert [(run["system"], run["runs"]) for run in runs] == [("aam", 3)]
    eers = [compute_eer(*_read(trials, scored[index][1])) for index in (0, 1, 3)]
    dcfs = [compute_min_dcf(*_read(trials, scored[index][1]), 0.01) for index in (0, 1, 3)]
    assert runs[0]["eer"] == pytest.approx(
        {"mean": np.mean(eers), "sd": np.std(eers, ddof=1), "min": min(eers), "max": max(eers)}
    )
    assert runs[0]["min_dcf_0.01"]["mean"] == pytest.approx(np.mean(dcfs))
    assert runs[0]["min_dcf_0.01"]["sd"] == pytest.approx(np.std(dcfs, ddof=1))
    row = f"| aam | 3 | {100 * np.mean(eers):.2f} ± {100 * np.std(eers, ddof=1):.2f} |"
    assert row in (out / "report.md").read_text()
    alone = tmp_path / "alone"
    run_cli("report", "-q", "--trials", trials, "--bootstrap", "0", "--no-det", "--out-dir", alone, scored[0][1])
    assert not (alone / "runs.json").exists() and "runs of one system" not in (alone / "report.md").read_text()


def test_speaker_bootstrap_and_calibration(run_cli, tmp_path: Path) -> None:
    trials, scores = _write_set(tmp_path, "test", 2, 1.5)
    held_out_trials, held_out_scores = _write_set(tmp_path, "dev", 3, 1.5)
    utt2spk = tmp_path / "utt2spk"
    keys = sorted({line.split()[0] for line in trials.read_text().splitlines()})
    utt2spk.write_text("".join(f"{key} {key.split('-')[0]}\n" for key in keys))
    result = run_cli(
        "report", "--trials", trials, "--utt2spk", utt2spk, "--bootstrap", "100", "--calibrate", held_out_scores,
        "--calibrate-trials", held_out_trials, "--out-dir", tmp_path / "out", scores,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "out" / "report.json").read_text())[0]
    assert row["ci"]["unit"] == "enrolment speaker" and row["calibrated"]
    scale, offset = fit_calibration(*_read(held_out_trials, held_out_scores))
    values, labels = _read(trials, scores)
    assert row["calibration"]["scale"] == pytest.approx(scale)
    assert row["act_dcf_0.01"] == pytest.approx(compute_act_dcf(scale * values + offset, labels, 0.01))
    assert row["cllr"] == pytest.approx(compute_cllr(scale * values + offset, labels))
    utt2spk.write_text("nobody x\n")
    failed = run_cli("report", "--trials", trials, "--utt2spk", utt2spk, "--out-dir", tmp_path / "x", scores)
    assert failed.exit_code == 1 and "enrolment utterances of the trials have no speaker" in failed.stderr


def test_mismatched_lists_are_user_errors(run_cli, tmp_path: Path) -> None:
    trials, scores = _write_set(tmp_path, "a", 4, 1.0)
    for arguments, message in (
        (["--trials", trials, "--trials", trials, "--trials", trials, scores, scores], "3 --trials lists for 2 score"),
        (["--trials", trials, "--calibrate", scores, scores], "--calibrate needs --calibrate-trials"),
    ):
        result = run_cli("report", *arguments)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


def test_det_plot_of_a_large_list_stays_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(200_000) < 0.01
    curves = [
        LabelledCurve(name, det_curve(rng.normal(size=200_000) + shift * labels, labels))
        for name, shift in (("a", 2), ("b", 3))
    ]
    path = plot_det(curves, tmp_path / "det.png")
    assert path.stat().st_size < 200_000


def test_report_reads_wespeaker_scores_names_what_it_writes_and_gives_thresholds(tmp_path) -> None:
    """A fourth field (WeSpeaker's label) is read; pairs the trials lack are named; the thresholds at the
    EER and minDCF points decide as the figures say; every written path is logged; an earlier report is
    replaced only with a warning; actDCF and Cllr of raw scores are marked."""
    from click.testing import CliRunner

    from spkverif.cli import cli

    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.3
    scores = np.round(np.where(labels, rng.normal(0.6, 0.1, 400), rng.normal(0.2, 0.1, 400)), 6)  # as written
    trials = tmp_path / "trials"
    trials.write_text("".join(f"e{i} t{i} {'target' if lab else 'nontarget'}\n" for i, lab in enumerate(labels)))
    wespeaker = tmp_path / "wespeaker.score"
    lines = [
        f"e{i} t{i} {s:.6f} {'target' if lab else 'nontarget'}\n"
        for i, (s, lab) in enumerate(zip(scores, labels, strict=True))
    ]
    wespeaker.write_text("".join(lines) + "x y 0.5 nontarget\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "--trials", str(trials), "--bootstrap", "0", "--out-dir", str(out),
                                      str(wespeaker)], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "1 of its 401 scores are of pairs the trial list" in result.stderr and "(e.g. x y)" in result.stderr
    assert f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'det.png'}" in result.stderr
    row = json.loads((out / "report.json").read_text())[0]
    accepted = scores >= row["eer_threshold"]
    miss, false_alarm = (~accepted[labels]).mean(), accepted[~labels].mean()
    assert abs(miss - false_alarm) <= 2 / labels.sum() and abs(row["eer"] - (miss + false_alarm) / 2) < 0.01
    at = scores >= row["min_dcf_0.01_threshold"]
    cost = (0.01 * (~at[labels]).mean() + 0.99 * at[~labels].mean()) / 0.01
    assert cost == pytest.approx(row["min_dcf_0.01"], abs=1e-9)
    assert (
        "actDCF(0.01)*" in (out / "report.md").read_text()
        and "log-likelihood ratios" in (out / "report.md").read_text()
    )
    again = CliRunner().invoke(cli, ["report", "-q", "--trials", str(trials), "--bootstrap", "0", "--out-dir",
                                     str(out), str(wespeaker)], catch_exceptions=False)  # fmt: skip
    assert again.exit_code == 0 and "replacing the earlier report.json, report.md, det.png" in again.stderr
