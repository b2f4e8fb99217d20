"""`verify` with a calibration from `report --save-calibration`, and quality-measure calibration (QMF)."""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from spkverif.backends.calibration import Calibration
from spkverif.io.specifiers import load_vectors
from spkverif.metrics import bayes_threshold, compute_cllr, fit_calibration
from spkverif.models import build_model
from spkverif.training.checkpoint import model_payload, save_atomic
from tests.conftest import write_wav

TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}


def _model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_atomic(model_payload(build_model("xvector", TINY)), path)
    return path


def _held_out(directory: Path, n: int = 600, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Labelled trials and cosine-like scores: targets around 0.6, nontargets around 0.1."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.where(labels, 0.6, 0.1) + 0.15 * rng.normal(size=n)
    trials, score_file = directory / f"held{seed}.trials", directory / f"held{seed}.scores"
    trials.write_text("".join(f"e{i} t{i} {'target' if lab else 'nontarget'}\n" for i, lab in enumerate(labels)))
    score_file.write_text("".join(f"e{i} t{i} {s:.6f}\n" for i, s in enumerate(scores)))
    return trials, score_file, scores, labels


@pytest.fixture
def setup(run_cli, tmp_path: Path) -> dict[str, Path]:
    model = _model(tmp_path / "final.pt", 0)
    trials, scores, _, _ = _held_out(tmp_path)
    calibration = tmp_path / "cal.json"
    result = run_cli(
        "report", "-q", "--trials", trials, "--calibrate", scores, "--calibrate-trials", trials, "--no-det",
        "--bootstrap", "0", "--out-dir", tmp_path / "report", "--model", model, "--save-calibration", calibration,
        scores,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = {"model": model, "calibration": calibration}
    for name, seconds, seed in (("a1", 1.2, 1), ("a2", 2.0, 2), ("b", 1.5, 3), ("short", 0.05, 4)):
        files[name] = write_wav(tmp_path / f"{name}.wav", seconds, seed=seed)
    files["a8k"] = write_wav(tmp_path / "a8k.wav", 1.0, rate=8000, seed=5)
    return files


def _embeddings(run_cli, model: Path, wavs: list[Path], tmp_path: Path) -> dict[str, np.ndarray]:
    (tmp_path / "wav.scp").write_text("".join(f"{w.stem} {w}\n" for w in wavs))
    result = run_cli("extract", "-q", "--model", model, f"scp:{tmp_path / 'wav.scp'}", f"ark:{tmp_path / 'x.ark'}")
    assert result.exit_code == 0, result.stderr
    keys, vectors = load_vectors(f"ark:{tmp_path / 'x.ark'}")
    return dict(zip(keys, vectors.astype(np.float64), strict=True))


def _cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(left @ right / np.linalg.norm(left) / np.linalg.norm(right))


def test_verify_prints_score_llr_and_decision(run_cli, setup, tmp_path: Path) -> None:
    calibration = json.loads(setup["calibration"].read_text())
    assert calibration["format"] == "spkverif-calibration" and calibration["method"] == "linear"
    _, _, values, labels = _held_out(tmp_path, seed=0)
    scale, offset = fit_calibration(values, labels)
    assert calibration["weights"] == [pytest.approx(scale, rel=1e-6)]
    assert calibration["offset"] == pytest.approx(offset, rel=1e-6, abs=1e-9)

    vectors = _embeddings(run_cli, setup["model"], [setup["a1"], setup["a2"], setup["b"]], tmp_path)
    result = run_cli("verify", "-q", "--model", setup["model"], "--calibration", setup["calibration"], setup["a1"],
                     setup["b"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    header, line = result.output.splitlines()
    assert header == "# enroll test score llr decision"
    enroll, test, score, llr, decision = line.split()
    assert (enroll, test) == (str(setup["a1"]), str(setup["b"]))
    assert float(score) == pytest.approx(_cosine(vectors["a1"], vectors["b"]), abs=2e-6)
    assert float(llr) == pytest.approx(scale * float(score) + offset, abs=1e-3)
    assert decision == ("accept" if float(llr) >= 0.0 else "reject")  # verify's prior is 0.5: LLR >= 0

    for options, threshold in (
        (["--p-target", "0.01"], bayes_threshold(0.01)),
        (["--p-target", "0.001"], bayes_threshold(0.001)),
    ):
        result = run_cli("verify", "-q", "--model", setup["model"], "--calibration", setup["calibration"], *options,
                         setup["a1"], setup["b"])  # fmt: skip
        assert result.output.splitlines()[1].split()[4] == ("accept" if float(llr) >= threshold else "reject")


def test_enrolment_averages_embeddings_and_pairs_file(run_cli, setup, tmp_path: Path) -> None:
    vectors = _embeddings(run_cli, setup["model"], [setup["a1"], setup["a2"], setup["b"]], tmp_path)
    pairs = tmp_path / "pairs"
    pairs.write_text(f"{setup['a1']} {setup['a2']} {setup['b']}\n{setup['b']} {setup['a1']}\n")
    out = tmp_path / "out" / "verdicts"
    result = run_cli("verify", "-q", "--model", setup["model"], "--pairs", pairs, "--out", out)
    assert result.exit_code == 0 and result.output == "", result.stderr
    header, *rows = out.read_text().splitlines()
    assert header == "# enroll test score"
    lines = [line.split() for line in rows]
    assert lines[0][:2] == [f"{setup['a1']},{setup['a2']}", str(setup["b"])] and len(lines[0]) == 3
    mean = (vectors["a1"] + vectors["a2"]) / 2
    assert float(lines[0][2]) == pytest.approx(_cosine(mean, vectors["b"]), abs=2e-6)
    assert float(lines[1][2]) == pytest.approx(_cosine(vectors["b"], vectors["a1"]), abs=2e-6)


def test_verify_refuses_what_does_not_fit(run_cli, setup, tmp_path: Path) -> None:
    other = _model(tmp_path / "other.pt", 1)
    cal, a, b = setup["calibration"], setup["a1"], setup["b"]
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    for arguments, message in (
        (["--model", other, "--calibration", cal, a, b], "calibrated for model"),
        (["--model", setup["model"], a, setup["short"]], "0.050 s of audio is shorter than the model accepts"),
        (["--model", setup["model"], a, setup["a8k"]], "sampled at 8000 Hz, not 16000 Hz (pass --resample"),
        (["--model", setup["model"], "--p-target", "0.01", a, b], "need --calibration"),
        (["--model", setup["model"], "--calibration", tmp_path / "bad.json", a, b], "not a calibration file"),
        (["--model", setup["model"], "--calibration", cal, "--fa-rate", "1e-6", a, b], "below what the calibration"),
    ):
        result = run_cli("verify", "-q", *arguments)
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    resampled = run_cli("verify", "-q", "--model", setup["model"], "--resample", a, setup["a8k"])
    assert resampled.exit_code == 0 and len(resampled.output.splitlines()[1].split()) == 3


def test_fa_rate_threshold_holds_on_the_calibration_trials(setup, tmp_path: Path) -> None:
    _, _, scores, labels = _held_out(tmp_path, seed=0)
    calibration = Calibration.load(setup["calibration"])
    llrs = calibration.weights[0] * scores + calibration.offset
    for rate in (0.01, 0.05, 0.2):
        threshold, _ = calibration.threshold(fa_rate=rate)
        achieved = np.mean(llrs[~labels] >= threshold)
        assert achieved <= rate and achieved > rate / 3


def _quality_set(directory: Path, name: str, seed: int, n: int = 2000) -> dict[str, Path]:
    """Trials whose cosine scores rise by 0.25 per unit of log shorter duration, for targets and nontargets alike
    (short recordings look alike): a shift the score alone cannot undo and durations can."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    durations = np.exp(rng.uniform(np.log(0.5), np.log(20.0), size=(n, 2)))
    norms = rng.uniform(5, 15, size=(n, 2))
    scores = np.where(labels, 0.5, 0.1) - 0.25 * np.log(durations.min(axis=1)) + 0.1 * rng.normal(size=n)
    keys = [(f"{name}e{i}", f"{name}t{i}") for i in range(n)]
    paths = {key: directory / f"{name}.{key}" for key in ("trials", "scores", "utt2dur", "ark")}
    paths["trials"].write_text(
        "".join(f"{e} {t} {'target' if lab else 'nontarget'}\n" for (e, t), lab in zip(keys, labels, strict=True))
    )
    paths["scores"].write_text("".join(f"{e} {t} {s:.6f}\n" for (e, t), s in zip(keys, scores, strict=True)))
    paths["utt2dur"].write_text(
        "".join(f"{e} {d[0]:.4f}\n{t} {d[1]:.4f}\n" for (e, t), d in zip(keys, durations, strict=True))
    )
    with kaldiio.WriteHelper(f"ark:{paths['ark']}") as writer:
        for (e, t), (ne, nt) in zip(keys, norms, strict=True):
            for key, norm in ((e, ne), (t, nt)):
                vector = rng.normal(size=8)
                writer(key, (norm * vector / np.linalg.norm(vector)).astype(np.float32))
    return paths


def test_qmf_calibration_lowers_cllr_and_act_dcf_on_held_out_trials(run_cli, tmp_path: Path) -> None:
    train, test = _quality_set(tmp_path, "a", 0), _quality_set(tmp_path, "b", 1)
    model = _model(tmp_path / "final.pt", 0)
    rows = {}
    for method in ("linear", "qmf"):
        result = run_cli(
            "report", "-q", "--trials", test["trials"], "--calibrate", train["scores"], "--calibrate-trials",
            train["trials"], "--calibration-method", method, "--durations", train["utt2dur"], "--durations",
            test["utt2dur"], "--embeddings", f"ark:{train['ark']}", "--embeddings", f"ark:{test['ark']}",
            "--bootstrap", "0", "--no-det", "--out-dir", tmp_path / method, "--model", model,
            "--save-calibration", tmp_path / f"{method}.json", test["scores"],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        rows[method] = json.loads((tmp_path / method / "report.json").read_text())[0]
    assert rows["qmf"]["calibration"]["method"] == "qmf"
    assert rows["qmf"]["cllr"] < 0.8 * rows["linear"]["cllr"]
    assert rows["qmf"]["act_dcf_0.01"] < rows["linear"]["act_dcf_0.01"]
    weights = rows["qmf"]["calibration"]["weights"]
    assert weights["log_duration_min"] / weights["score"] == pytest.approx(0.25, rel=0.15)
    assert abs(weights["norm_min"]) < 0.05 * abs(weights["score"])

    saved = Calibration.load(tmp_path / "qmf.json")
    scores = np.array([float(line.split()[2]) for line in test["scores"].read_text().splitlines()])
    labels = np.array([line.split()[2] == "target" for line in test["trials"].read_text().splitlines()])
    assert compute_cllr(scores * saved.weights[0] + saved.offset, labels) > rows["qmf"]["cllr"]

    result = run_cli(
        "report", "-q", "--trials", test["trials"], "--calibrate", train["scores"], "--calibrate-trials",
        train["trials"], "--calibration-method", "qmf", "--bootstrap", "0", "--no-det", "--out-dir", tmp_path / "x",
        test["scores"],
    )  # fmt: skip
    assert result.exit_code == 1 and "qmf needs --durations" in result.stderr
    result = run_cli("report", "-q", "--trials", test["trials"], "--calibrate", train["scores"], "--calibrate-trials",
                     train["trials"], "--calibration-method", "bosaris", test["scores"])  # fmt: skip
    assert result.exit_code == 1 and "unknown calibration method 'bosaris'; choose one of: linear, qmf" in result.stderr


def _top_mean(vectors: np.ndarray, cohort: np.ndarray, top_n: int) -> np.ndarray:
    """Each vector's mean of its top_n cosine scores against the cohort, written plainly (a sort)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cohort_unit = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    return np.sort(unit @ cohort_unit.T, axis=1)[:, -top_n:].mean(axis=1)


def _cohort_set(directory: Path, name: str, seed: int, cohort: np.ndarray, n: int = 2000) -> dict[str, Path]:
    """Trials whose scores rise by 1.5 per unit of the two sides' cohort means (a "hub" embedding scores high
    against everyone): a shift only the cohort terms can undo. Durations and norms carry no information."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    vectors = rng.normal(size=(n, 2, 8))
    means = _top_mean(vectors.reshape(-1, 8), cohort, 5).reshape(n, 2)
    scores = (
        np.where(labels, 0.5, 0.1) + 1.5 * (means.sum(axis=1) - means.sum(axis=1).mean()) + 0.1 * rng.normal(size=n)
    )
    keys = [(f"{name}e{i}", f"{name}t{i}") for i in range(n)]
    paths = {key: directory / f"{name}.{key}" for key in ("trials", "scores", "utt2dur", "ark")}
    paths["trials"].write_text(
        "".join(f"{e} {t} {'target' if lab else 'nontarget'}\n" for (e, t), lab in zip(keys, labels, strict=True))
    )
    paths["scores"].write_text("".join(f"{e} {t} {s:.6f}\n" for (e, t), s in zip(keys, scores, strict=True)))
    paths["utt2dur"].write_text("".join(f"{e} 3.0\n{t} 3.0\n" for e, t in keys))
    with kaldiio.WriteHelper(f"ark:{paths['ark']}") as writer:
        for (e, t), pair in zip(keys, vectors, strict=True):
            writer(e, pair[0].astype(np.float32))
            writer(t, pair[1].astype(np.float32))
    return paths


def test_qmf_with_cohort_means_lowers_cllr_and_verify_applies_it(run_cli, setup, tmp_path: Path) -> None:
    cohort = np.random.default_rng(9).normal(size=(40, 8))
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'cohort.ark'},{tmp_path / 'cohort.scp'}") as writer:
        for index, vector in enumerate(cohort):
            writer(f"c{index:02d}", vector.astype(np.float32))
    train, test = _cohort_set(tmp_path, "a", 0, cohort), _cohort_set(tmp_path, "b", 1, cohort)
    common = [
        "report", "-q", "--trials", test["trials"], "--calibrate", train["scores"], "--calibrate-trials",
        train["trials"], "--calibration-method", "qmf", "--durations", train["utt2dur"], "--durations",
        test["utt2dur"], "--embeddings", f"ark:{train['ark']}", "--embeddings", f"ark:{test['ark']}",
        "--bootstrap", "0", "--no-det", "--model", setup["model"],
    ]  # fmt: skip
    rows = {}
    for name, extra in (("plain", []), ("cohort", ["--cohort", f"scp:{tmp_path / 'cohort.scp'}", "--top-n", "5"])):
        result = run_cli(*common, *extra, "--out-dir", tmp_path / name, "--save-calibration",
                         tmp_path / f"{name}.json", test["scores"])  # fmt: skip
        assert result.exit_code == 0, result.stderr
        rows[name] = json.loads((tmp_path / name / "report.json").read_text())[0]
    assert rows["cohort"]["cllr"] < 0.8 * rows["plain"]["cllr"]
    assert rows["cohort"]["act_dcf_0.01"] < rows["plain"]["act_dcf_0.01"]
    weights = rows["cohort"]["calibration"]["weights"]
    for side in ("cohort_mean_enroll", "cohort_mean_test"):
        assert weights[side] / weights["score"] == pytest.approx(-1.5, rel=0.15)
    assert "cohort_mean_enroll" not in rows["plain"]["calibration"]["weights"]
    saved = Calibration.load(tmp_path / "cohort.json")
    assert saved.cohort_top_n == 5 and saved.measures[-2:] == ["cohort_mean_enroll", "cohort_mean_test"]

    # verify computes each side's cohort mean the same way, and needs the cohort to apply such a calibration
    arguments = ["verify", "-q", "--model", setup["model"], "--calibration", tmp_path / "cohort.json"]
    result = run_cli(*arguments, setup["a1"], setup["b"])
    assert result.exit_code == 1 and "include cohort means: pass the --cohort" in result.stderr
    result = run_cli(*arguments, "--cohort", f"scp:{tmp_path / 'cohort.scp'}", setup["a1"], setup["b"])
    assert result.exit_code == 0, result.stderr
    _, _, score, llr, _ = result.output.splitlines()[1].split()
    vectors = _embeddings(run_cli, setup["model"], [setup["a1"], setup["b"]], tmp_path)
    sides = np.stack([vectors["a1"], vectors["b"]])
    durations = np.array([1.2, 1.5])
    norms = np.linalg.norm(sides, axis=1)
    features = [float(score), *np.log(np.sort(durations)), *np.sort(norms), *_top_mean(sides, cohort, 5)]
    assert float(llr) == pytest.approx(np.dot(saved.weights, features) + saved.offset, abs=2e-3)
    result = run_cli("verify", "-q", "--model", setup["model"], "--cohort", "scp:x.scp", setup["a1"], setup["b"])
    assert result.exit_code == 1 and "--cohort is for a calibration with cohort measures" in result.stderr


@pytest.mark.slow
def test_threshold_and_json_decide_on_the_score(run_cli, setup, tmp_path: Path) -> None:
    vectors = _embeddings(run_cli, setup["model"], [setup["a1"], setup["b"]], tmp_path)
    cosine = _cosine(vectors["a1"], vectors["b"])
    # the tiny model's cosines are near 1, where no threshold in --threshold's range [-1, 1] lies above them
    cases = [(cosine - 0.01, "accept")] + ([(cosine + 0.01, "reject")] if cosine < 0.99 else [(-1.0, "accept")])
    for threshold, decision in cases:
        table = run_cli("verify", "-q", "--model", setup["model"], "--threshold", f"{threshold:.6f}", setup["a1"],
                        setup["b"])  # fmt: skip
        assert table.exit_code == 0, table.stderr
        assert table.output.splitlines()[0] == "# enroll test score decision"
        assert table.output.splitlines()[1].split()[3] == decision
        as_json = run_cli("verify", "-q", "--model", setup["model"], "--threshold", f"{threshold:.6f}", "--json",
                          setup["a1"], setup["b"])  # fmt: skip
        record = json.loads(as_json.output)
        assert record["decision"] == decision and record["threshold_on"] == "score" and record["llr"] is None
        assert record["enroll"] == [str(setup["a1"])] and record["score"] == pytest.approx(cosine, abs=2e-6)
        assert record["score_kind"] == "cosine"
    calibrated = run_cli("verify", "-q", "--model", setup["model"], "--calibration", setup["calibration"], "--json",
                         setup["a1"], setup["b"])  # fmt: skip
    record = json.loads(calibrated.output)
    assert record["threshold"] == 0.0 and record["threshold_on"] == "llr"
    assert record["decision"] == ("accept" if record["llr"] >= 0 else "reject")
    both = run_cli("verify", "-q", "--model", setup["model"], "--calibration", setup["calibration"], "--threshold",
                   "0.5", setup["a1"], setup["b"])  # fmt: skip
    assert both.exit_code == 1 and "not both" in both.stderr
