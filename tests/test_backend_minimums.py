"""The smallest inputs each back-end statistic needs: every limit at its value (works, or warns) and one below
(a `SpkverifError` saying what is needed), from the constants the back ends check against."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from spkverif.backends.base import score_pairs
from spkverif.backends.calibration import (
    MIN_TRIALS_PER_CLASS,
    TRIALS_PER_WEIGHT,
    TrialQuality,
    fit_calibration_file,
)
from spkverif.backends.cosine import CosineScorer
from spkverif.backends.plda import MIN_LDA_DIM, MIN_PLDA_SPEAKERS, PldaModel, PldaScorer
from spkverif.backends.snorm import MIN_COHORT_SIZE, MIN_MEAN_TOP_N, MIN_TOP_N, CohortMeans, CohortNormScorer
from spkverif.base.errors import SpkverifError
from spkverif.io.specifiers import ArchiveWriter

WARNING = logging.WARNING


def _write(path: Path, vectors: np.ndarray) -> str:
    with ArchiveWriter(f"ark,scp:{path}.ark,{path}.scp") as writer:
        for index, vector in enumerate(vectors):
            writer.write(f"u{index:03d}", vector.astype(np.float32))
    return f"scp:{path}.scp"


def _normalised_scores(cohort: np.ndarray, top_n: int | None, embeddings: np.ndarray) -> np.ndarray:
    index = np.arange(len(embeddings))
    return score_pairs(CohortNormScorer(cohort, top_n, CosineScorer()), embeddings, embeddings, index, index[::-1])


# s-norm and AS-norm: the cohort, top N, each embedding's spread ------------------------------------


@pytest.mark.parametrize("size", [MIN_COHORT_SIZE, MIN_COHORT_SIZE - 1])
def test_snorm_cohort_size(size: int) -> None:
    rng = np.random.default_rng(0)
    cohort, embeddings = rng.normal(size=(size, 5)), rng.normal(size=(6, 5))
    if size >= MIN_COHORT_SIZE:
        assert np.isfinite(_normalised_scores(cohort, None, embeddings)).all()
        return
    with pytest.raises(SpkverifError, match=f"needs at least {MIN_COHORT_SIZE} cohort embeddings .* the cohort has 1"):
        _normalised_scores(cohort, None, embeddings)


@pytest.mark.parametrize("top_n", [MIN_TOP_N, MIN_TOP_N - 1])
def test_asnorm_top_n_lower_limit(top_n: int) -> None:
    rng = np.random.default_rng(1)
    cohort, embeddings = rng.normal(size=(8, 5)), rng.normal(size=(6, 5))
    if top_n >= MIN_TOP_N:
        assert np.isfinite(_normalised_scores(cohort, top_n, embeddings)).all()
        return
    with pytest.raises(SpkverifError, match=f"--top-n 1 is too few for AS-norm: .* at least {MIN_TOP_N} of them"):
        _normalised_scores(cohort, top_n, embeddings)


@pytest.mark.parametrize("extra", [0, 1])
def test_asnorm_top_n_at_most_the_cohort(extra: int) -> None:
    """Refused above the cohort's size, not clamped: a clamp would make two --top-n values give one result."""
    rng = np.random.default_rng(2)
    cohort, embeddings = rng.normal(size=(8, 5)), rng.normal(size=(6, 5))
    if not extra:
        assert _normalised_scores(cohort, 8, embeddings) == pytest.approx(_normalised_scores(cohort, None, embeddings))
        return
    with pytest.raises(SpkverifError, match="--top-n 9 must be between 1 and the cohort's size, 8"):
        _normalised_scores(cohort, 8 + extra, embeddings)


@pytest.mark.parametrize("distinct", [MIN_COHORT_SIZE, MIN_COHORT_SIZE - 1])
def test_snorm_cohort_must_not_be_all_one_direction(distinct: int) -> None:
    """Entries that differ only in length are one direction after length normalisation."""
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(distinct, 5))
    cohort = np.concatenate([directions * scale for scale in (1.0, 2.0, 3.0)])
    embeddings = rng.normal(size=(6, 5))
    if distinct >= MIN_COHORT_SIZE:
        assert np.isfinite(_normalised_scores(cohort, None, embeddings)).all()
        return
    with pytest.raises(SpkverifError, match=r"the 3 cohort embeddings all point the same way .* at least 2 cohort"):
        _normalised_scores(cohort, None, embeddings)


@pytest.mark.parametrize("top_n", [3, 2])
def test_asnorm_refuses_an_embedding_whose_top_scores_are_equal(top_n: int) -> None:
    """A cohort holding one entry twice: an embedding nearest to it has two equal top scores, so a top 2 has
    standard deviation 0 (today's floor would divide by 1e-8); a top 3 reaches an entry that differs."""
    rng = np.random.default_rng(4)
    twice, others = rng.normal(size=5), rng.normal(size=(5, 5))
    cohort = np.vstack([twice, twice, others])
    near = np.vstack([others[:3], twice, others[3:]])  # the 4th embedding is nearest the entry held twice
    embeddings = near + 0.01 * rng.normal(size=near.shape)
    if top_n == 3:
        assert np.abs(_normalised_scores(cohort, top_n, embeddings)).max() < 100
        return
    with pytest.raises(SpkverifError, match=r"cannot normalise embedding 4 of the trial embeddings .* top 2 cohort"):
        _normalised_scores(cohort, top_n, embeddings)


@pytest.mark.parametrize("top_n", [MIN_MEAN_TOP_N, MIN_MEAN_TOP_N - 1, 4, 5])
def test_qmf_cohort_mean_needs_one_score(tmp_path: Path, top_n: int) -> None:
    """A mean, unlike a standard deviation, is defined from one score: QMF's cohort mean takes 1..cohort size."""
    rng = np.random.default_rng(5)
    cohort = _write(tmp_path / "cohort", rng.normal(size=(4, 5)))
    if MIN_MEAN_TOP_N <= top_n <= 4:
        means = CohortMeans(cohort, None, top_n)(rng.normal(size=(3, 5)))
        assert means.shape == (3,) and np.isfinite(means).all()
        return
    with pytest.raises(SpkverifError, match=f"--top-n {top_n} must be between {MIN_MEAN_TOP_N} and the cohort's size"):
        CohortMeans(cohort, None, top_n)


# PLDA and LDA ----------------------------------------------------------------------------------------


def _speakers(counts: list[int], dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    return (rng.normal(size=(len(counts), dim)) * 3)[labels] + rng.normal(size=(len(labels), dim)), labels


@pytest.mark.parametrize("speakers", [MIN_PLDA_SPEAKERS, MIN_PLDA_SPEAKERS - 1])
def test_plda_needs_two_speakers(speakers: int) -> None:
    vectors, labels = _speakers([6] * speakers, 3)
    if speakers >= MIN_PLDA_SPEAKERS:
        model = PldaModel.train(vectors, labels, None, 3)
        assert np.isfinite(score_pairs(PldaScorer(model), vectors, vectors, labels, labels[::-1])).all()
        return
    with pytest.raises(SpkverifError, match=r"PLDA needs embeddings of at least 2 speakers .* got 1 speaker"):
        PldaModel.train(vectors, labels, None, 3)


@pytest.mark.parametrize("embeddings", [7, 6])
def test_plda_within_scatter_needs_dimension_plus_speakers(embeddings: int) -> None:
    """Three speakers in four dimensions: the within-class scatter has rank N - 3, full at N = 7."""
    vectors, labels = _speakers([embeddings - 4, 2, 2], 4)
    if embeddings == 7:
        PldaModel.train(vectors, labels, None, 3)
        return
    with pytest.raises(SpkverifError, match=r"singular: rank 3 in dimension 4 .* needs at least 7 embeddings"):
        PldaModel.train(vectors, labels, None, 3)


@pytest.mark.parametrize("lda_dim", [MIN_LDA_DIM, MIN_LDA_DIM - 1])
def test_lda_before_length_normalisation_needs_two_dimensions(lda_dim: int) -> None:
    """In one dimension, length normalisation leaves +1 and -1, and PLDA scores take two values."""
    vectors, labels = _speakers([5] * 6, 6, seed=1)
    if lda_dim >= MIN_LDA_DIM:
        model = PldaModel.train(vectors, labels, lda_dim, 3)
        index = np.arange(len(vectors))
        scores = score_pairs(PldaScorer(model), vectors, vectors, index, np.roll(index, 1))
        assert len(np.unique(np.round(scores, 6))) == len(scores)
        return
    with pytest.raises(SpkverifError, match=r"--lda-dim 1 is too small: length normalisation .* two values"):
        PldaModel.train(vectors, labels, lda_dim, 3)


@pytest.mark.parametrize("lda_dim", [3, 4])
def test_lda_needs_one_speaker_more_than_dimensions(lda_dim: int) -> None:
    vectors, labels = _speakers([5] * 4, 6, seed=2)
    if lda_dim == 3:
        assert PldaModel.train(vectors, labels, lda_dim, 3).lda.shape == (6, 3)
        return
    with pytest.raises(SpkverifError, match=r"--lda-dim 4 must be between 2 and min\(dimension 6, speakers - 1 = 3\)"):
        PldaModel.train(vectors, labels, lda_dim, 3)


def test_two_speakers_allow_no_lda() -> None:
    vectors, labels = _speakers([5, 5], 4)
    with pytest.raises(SpkverifError, match="2 speakers allow no LDA: train without --lda-dim"):
        PldaModel.train(vectors, labels, MIN_LDA_DIM, 3)


@pytest.mark.parametrize("lda_dim", [2, 3])
def test_lda_keeps_no_more_dimensions_than_the_speaker_means_span(lda_dim: int) -> None:
    """Six speakers whose means lie in a plane: LDA to 2 dimensions, not to 3 (whose third would be arbitrary)."""
    rng = np.random.default_rng(3)
    plane = rng.normal(size=(2, 5))
    means = rng.normal(size=(6, 2)) @ plane
    labels = np.repeat(np.arange(6), 5)
    noise = rng.normal(size=(30, 5))
    noise -= np.repeat(noise.reshape(6, 5, 5).mean(axis=1), 5, axis=0)  # each speaker's mean stays in the plane
    vectors = (means[labels] + noise).astype(np.float32)
    if lda_dim == 2:
        assert PldaModel.train(vectors, labels, lda_dim, 3).lda.shape == (5, 2)
        return
    with pytest.raises(SpkverifError, match=r"--lda-dim 3 needs speaker means that span 3 .* span 2 .* 2 to 2"):
        PldaModel.train(vectors, labels, lda_dim, 3)


# calibration -----------------------------------------------------------------------------------------


def _trials(targets: int, nontargets: int, shift: float = 1.0, seed: int = 0) -> tuple[TrialQuality, np.ndarray]:
    """Scores N(shift, 1) for targets and N(0, 1) for nontargets, with durations and norms that vary."""
    rng = np.random.default_rng(seed)
    labels = np.arange(targets + nontargets) < targets
    scores = rng.normal(size=len(labels)) + shift * labels
    return TrialQuality(scores, rng.uniform(1, 10, (len(labels), 2)), rng.uniform(5, 15, (len(labels), 2))), labels


@pytest.mark.parametrize(
    ("targets", "nontargets"),
    [(MIN_TRIALS_PER_CLASS, MIN_TRIALS_PER_CLASS), (MIN_TRIALS_PER_CLASS - 1, 10), (10, MIN_TRIALS_PER_CLASS - 1)],
)
def test_calibration_needs_ten_trials_of_each_class(targets: int, nontargets: int, caplog) -> None:
    quality, labels = _trials(targets, nontargets)
    source = {"trials": "held.trials"}
    if min(targets, nontargets) >= MIN_TRIALS_PER_CLASS:
        with caplog.at_level(WARNING):
            calibration = fit_calibration_file(quality, labels, "linear", "fp", source)
        assert calibration.weights[0] > 0 and calibration.trials == {"target": 10, "nontarget": 10}
        assert not caplog.records  # overlapping classes, positive scale: nothing to warn about
        return
    with pytest.raises(SpkverifError) as raised:
        fit_calibration_file(quality, labels, "linear", "fp", source)
    assert str(raised.value) == (
        "held.trials: calibration needs at least 10 target and 10 nontarget trials (a logistic fit on fewer follows "
        f"those few trials, not the system); the held-out trials have {targets} target and {nontargets} nontarget"
    )


@pytest.mark.parametrize("highest_nontarget", [0.55, 0.45])
def test_perfectly_separated_calibration_trials_warn(highest_nontarget: float, caplog) -> None:
    """Targets score 0.5 to 1.5: a nontarget at 0.55 overlaps them (a finite optimum), one at 0.45 does not."""
    quality, labels = _trials(10, 10)
    quality.scores = np.concatenate([np.linspace(0.5, 1.5, 10), np.linspace(-1.0, highest_nontarget, 10)])
    with caplog.at_level(WARNING):
        calibration = fit_calibration_file(quality, labels, "linear", "fp")
    separated = [r for r in caplog.records if "perfectly separated" in r.getMessage()]
    if highest_nontarget > 0.5:
        assert not separated
        return
    assert len(separated) == 1 and separated[0].levelno == WARNING and "\n" not in separated[0].getMessage()
    assert f"the fitted score weight {calibration.weights[0]:.3g} is where the optimiser stopped" in caplog.text
    assert "unreliable" in caplog.text


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_a_score_weight_that_is_not_positive_warns(shift: float, caplog) -> None:
    quality, labels = _trials(40, 40, shift, seed=2)
    with caplog.at_level(WARNING):
        calibration = fit_calibration_file(quality, labels, "linear", "fp")
    assert (calibration.weights[0] > 0) == (shift > 0)
    assert ("not positive" in caplog.text) == (shift < 0)
    assert "labels or the scores reversed" in caplog.text or shift > 0


@pytest.mark.parametrize("same", [False, True])
def test_a_constant_score_is_refused(same: bool) -> None:
    quality, labels = _trials(10, 10)
    quality.scores = np.full(20, 0.5) if same else np.where(labels, 0.6, 0.5) + np.linspace(0, 0.5, 20)
    if not same:
        fit_calibration_file(quality, labels, "linear", "fp")
        return
    with pytest.raises(SpkverifError, match=r"every one of the 20 held-out trials has the score 0\.5"):
        fit_calibration_file(quality, labels, "linear", "fp")


def test_a_constant_quality_measure_gets_weight_zero_with_a_warning(caplog) -> None:
    """Durations all 3 s: fitted as they were, these trials gave them weights of -3e7 (and an offset of 7e7), an
    LLR off by millions for any recording of another length. Now they get 0 and the fit is the one without them."""
    quality, labels = _trials(60, 60, seed=3)
    quality.durations = np.full((120, 2), 3.0)
    with caplog.at_level(WARNING):
        calibration = fit_calibration_file(quality, labels, "qmf", "fp")
    assert calibration.weights[1:3] == [0.0, 0.0]
    assert max(abs(w) for w in calibration.weights) < 10 and abs(calibration.offset) < 10
    assert "log_duration_min = 1.09861, log_duration_max = 1.09861 are the same for all 120" in caplog.text
    assert "they get weight 0" in caplog.text
    other = TrialQuality(np.array([0.5]), np.array([[1.0, 20.0]]), np.array([[10.0, 10.0]]))
    assert abs(calibration.llrs(other)[0]) < 10


@pytest.mark.parametrize("per_class", [TRIALS_PER_WEIGHT * 5, TRIALS_PER_WEIGHT * 5 - 1])
def test_qmf_on_fewer_than_ten_trials_per_weight_warns(per_class: int, caplog) -> None:
    """QMF fits five weights (the score, two log durations, two norms): 50 trials of each class."""
    quality, labels = _trials(per_class, 50, seed=4)
    with caplog.at_level(WARNING):
        fit_calibration_file(quality, labels, "qmf", "fp")
    warned = "fewer than 10 of each per weight: its quality weights are unreliable" in caplog.text
    assert warned == (per_class < 50)
    if warned:
        assert "qmf calibration fits 5 weights on 49 target and 50 nontarget trials" in caplog.text


# through the CLI: one line, exit 1 --------------------------------------------------------------------


def _embeddings(directory: Path, speakers: int, per_speaker: int, dim: int) -> str:
    rng = np.random.default_rng(6)
    keys = [f"s{s}-u{u}" for s in range(speakers) for u in range(per_speaker)]
    vectors, _ = _speakers([per_speaker] * speakers, dim, seed=6)
    with ArchiveWriter(f"ark,scp:{directory}/e.ark,{directory}/e.scp") as writer:
        for key, vector in zip(keys, vectors, strict=True):
            writer.write(key, vector.astype(np.float32))
    (directory / "utt2spk").write_text("".join(f"{key} {key.split('-')[0]}\n" for key in keys))
    pairs = [(keys[i], keys[int(j)]) for i, j in enumerate(rng.permutation(len(keys)))]
    (directory / "trials").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    return f"scp:{directory}/e.scp"


def _one_line_error(result, stage: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"spkverif {stage}: error: ") and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("lda_dim", [MIN_LDA_DIM, MIN_LDA_DIM - 1])
def test_score_plda_with_lda_to_one_dimension_is_one_line(run_cli, tmp_path: Path, lda_dim: int) -> None:
    archive = _embeddings(tmp_path, 6, 5, 8)
    result = run_cli(
        "score", "--method", "plda", "--train-plda", archive, "--utt2spk", tmp_path / "utt2spk", "--lda-dim",
        lda_dim, "--plda-model", tmp_path / "plda.npz", "--trials", tmp_path / "trials", archive, tmp_path / "scores",
    )  # fmt: skip
    if lda_dim >= MIN_LDA_DIM:
        assert result.exit_code == 0, result.stderr
        scores = [float(line.split()[2]) for line in (tmp_path / "scores").read_text().splitlines()]
        assert len(set(scores)) > 3
        return
    assert _one_line_error(result, "score") == (
        "spkverif score: error: --lda-dim 1 is too small: length normalisation follows LDA, and in 1 dimension it "
        "maps every embedding to +1 or -1, so PLDA scores would take two values; use --lda-dim 2 or more, or no "
        "--lda-dim"
    )
    assert not (tmp_path / "scores").exists() and not (tmp_path / "plda.npz").exists()


@pytest.mark.parametrize("top_n", [MIN_TOP_N, MIN_TOP_N - 1])
def test_score_asnorm_with_a_top_of_one_is_one_line(run_cli, tmp_path: Path, top_n: int) -> None:
    archive = _embeddings(tmp_path, 6, 5, 8)
    result = run_cli(
        "score", "-q", "--method", "asnorm", "--cohort", archive, "--top-n", top_n, "--trials", tmp_path / "trials",
        archive, tmp_path / "scores",
    )  # fmt: skip
    if top_n >= MIN_TOP_N:
        assert result.exit_code == 0, result.stderr
        return
    assert "--top-n 1 is too few for AS-norm" in _one_line_error(result, "score")
    assert not (tmp_path / "scores").exists()


def test_report_calibrated_on_two_trials_is_one_line(run_cli, tmp_path: Path) -> None:
    """The two trials that gave a scale of 59 without a word."""
    (tmp_path / "trials").write_text("a b target\nc d nontarget\n")
    (tmp_path / "scores").write_text("a b 0.9\nc d 0.1\n")
    result = run_cli(
        "report", "-q", "--trials", tmp_path / "trials", "--calibrate", tmp_path / "scores", "--calibrate-trials",
        tmp_path / "trials", "--bootstrap", "0", "--no-det", "--out-dir", tmp_path / "out", tmp_path / "scores",
    )  # fmt: skip
    line = _one_line_error(result, "report")
    assert line.endswith(
        "calibration needs at least 10 target and 10 nontarget trials (a logistic fit on fewer follows those few "
        "trials, not the system); the held-out trials have 1 target and 1 nontarget"
    )
    assert not (tmp_path / "out" / "report.json").exists()
