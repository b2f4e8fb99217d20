"""EER, minDCF, actDCF, Cllr, bootstrap intervals and calibration against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from spkverif.base.errors import SpkverifError
from spkverif.metrics import (
    bootstrap,
    compute_act_dcf,
    compute_cllr,
    compute_eer,
    compute_min_dcf,
    fit_calibration,
)


def sklearn_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """The usual recipe: scikit-learn's ROC, interpolated, root of 1 - FPR - TPR."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)


def brute_force_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float) -> float:
    """Every threshold that changes a decision, one at a time."""
    best = np.inf
    for threshold in [*np.unique(scores), np.inf]:
        accept = scores >= threshold
        p_miss = np.mean(~accept[labels])
        p_fa = np.mean(accept[~labels])
        best = min(best, p_target * p_miss + (1 - p_target) * p_fa)
    return best / min(p_target, 1 - p_target)


def _random_set(seed: int, n: int = 600, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = rng.normal(0, 1, n) + 1.5 * labels
    if ties:
        scores = np.round(scores * 2) / 2
    return scores, labels


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_sklearn(seed: int, ties: bool) -> None:
    scores, labels = _random_set(seed, ties=ties)
    assert compute_eer(scores, labels) == pytest.approx(sklearn_eer(scores, labels), abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("p_target", [0.01, 0.001, 0.05])
def test_min_dcf_matches_brute_force(seed: int, ties: bool, p_target: float) -> None:
    scores, labels = _random_set(seed, ties=ties)
    assert compute_min_dcf(scores, labels, p_target) == pytest.approx(
        brute_force_min_dcf(scores, labels, p_target), abs=1e-6
    )


def test_known_values() -> None:
    labels = np.array([True, True, False, False])
    assert compute_eer(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert compute_eer(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert compute_eer(np.array([0.9, 0.3, 0.5, 0.1]), labels) == pytest.approx(0.5)
    assert compute_min_dcf(np.array([0.9, 0.8, 0.2, 0.1]), labels, 0.01) == 0.0
    assert compute_min_dcf(np.array([0.1, 0.2, 0.8, 0.9]), labels, 0.01) == pytest.approx(1.0)


def test_one_class_is_an_error() -> None:
    with pytest.raises(SpkverifError, match="both target and nontarget"):
        compute_eer(np.array([0.1, 0.2]), np.array([True, True]))


def kaldi_compute_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Kaldi's ivectorbin/compute-eer.cc, re-expressed: walk the sorted target scores, and stop at the
    first whose mirrored non-target position (same error rate) holds a lower score; no interpolation."""
    targets, nontargets = np.sort(scores[labels]), np.sort(scores[~labels])
    position = 0
    while position + 1 < len(targets):
        mirrored = max(len(nontargets) - 1 - int(len(nontargets) * position / len(targets)), 0)
        if nontargets[mirrored] < targets[position]:
            break
        position += 1
    return position / len(targets)


def kaldi_compute_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float) -> float:
    """Kaldi's sid/compute_min_dcf.py, re-expressed: sort (stable, ties unmerged), reject the first i + 1."""
    ordered = labels[np.argsort(scores, kind="stable")].astype(float)
    fnr = np.cumsum(ordered) / ordered.sum()
    fpr = 1 - np.cumsum(1 - ordered) / (len(ordered) - ordered.sum())
    return float(np.min(p_target * fnr + (1 - p_target) * fpr) / min(p_target, 1 - p_target))


@pytest.mark.parametrize("seed", range(8))
def test_eer_against_kaldi_compute_eer(seed: int) -> None:
    """Kaldi reads the EER off a grid of 1/targets without interpolating; without ties it lies within one step
    of each class of ours."""
    scores, labels = _random_set(seed)
    step = 1 / labels.sum() + 1 / (~labels).sum()
    assert abs(compute_eer(scores, labels) - kaldi_compute_eer(scores, labels)) <= step


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("p_target", [0.01, 0.001, 0.05])
def test_min_dcf_against_kaldi_compute_min_dcf(seed: int, p_target: float) -> None:
    scores, labels = _random_set(seed)
    assert compute_min_dcf(scores, labels, p_target) == pytest.approx(
        kaldi_compute_min_dcf(scores, labels, p_target), abs=1e-6
    )
    tied_scores, tied_labels = _random_set(seed, ties=True)
    # Kaldi's script may split a run of tied scores, an operating point no threshold reaches: never higher.
    assert (
        kaldi_compute_min_dcf(tied_scores, tied_labels, p_target)
        <= compute_min_dcf(tied_scores, tied_labels, p_target) + 1e-12
    )


def test_act_dcf_and_cllr_by_hand() -> None:
    llrs = np.array([2.0, -1.0, 5.0, 0.5, -3.0, 4.0])
    labels = np.array([True, True, True, False, False, False])
    # p = 0.01: threshold log(99) = 4.595; targets 2 and -1 are missed, no false alarm.
    assert compute_act_dcf(llrs, labels, 0.01) == pytest.approx((0.01 * 2 / 3) / 0.01)
    # p = 0.5: threshold 0; one miss (-1), two false alarms (0.5, 4).
    assert compute_act_dcf(llrs, labels, 0.5) == pytest.approx((0.5 * 1 / 3 + 0.5 * 2 / 3) / 0.5)
    by_hand = (
        np.mean([np.log2(1 + np.exp(-2.0)), np.log2(1 + np.exp(1.0)), np.log2(1 + np.exp(-5.0))])
        + np.mean([np.log2(1 + np.exp(0.5)), np.log2(1 + np.exp(-3.0)), np.log2(1 + np.exp(4.0))])
    ) / 2
    assert compute_cllr(llrs, labels) == pytest.approx(by_hand)
    assert compute_cllr(np.zeros(6), labels) == pytest.approx(1.0)


def test_bootstrap_interval() -> None:
    scores, labels = _random_set(0, n=2000)
    eer = compute_eer(scores, labels)
    first = bootstrap(scores, labels, (0.01,), replicates=300, seed=7)
    assert first.eer.low < eer < first.eer.high
    assert first.min_dcf[0.01].low <= compute_min_dcf(scores, labels, 0.01) <= first.min_dcf[0.01].high
    assert bootstrap(scores, labels, (0.01,), replicates=300, seed=7) == first
    assert bootstrap(scores, labels, (0.01,), replicates=300, seed=8) != first
    more_scores, more_labels = _random_set(0, n=20000)
    wider = first.eer.high - first.eer.low
    narrower = bootstrap(more_scores, more_labels, replicates=300, seed=7).eer
    assert narrower.high - narrower.low < wider / 2
    speakers = np.arange(2000) % 40
    clustered = bootstrap(scores, labels, replicates=300, seed=7, clusters=speakers)
    assert clustered.unit == "cluster" and clustered.eer.low < eer < clustered.eer.high


def test_bootstrap_resamples_correlated_trials_together() -> None:
    """When every trial of a speaker shares one offset, the speaker bootstrap sees the real spread."""
    rng = np.random.default_rng(1)
    speakers = np.repeat(np.arange(30), 100)
    labels = rng.random(3000) < 0.5
    scores = rng.normal(size=3000) + 2 * labels + np.where(labels, rng.normal(size=30)[speakers], 0)
    by_trial = bootstrap(scores, labels, replicates=300).eer
    by_speaker = bootstrap(scores, labels, replicates=300, clusters=speakers).eer
    assert by_speaker.high - by_speaker.low > 1.5 * (by_trial.high - by_trial.low)


def test_calibration_matches_sklearn_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    scores, labels = _random_set(3, n=3000)
    scale, offset = fit_calibration(scores, labels)
    reference = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-10, max_iter=1000)
    reference.fit(scores[:, None], labels)
    assert scale == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert offset == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert compute_cllr(scale * scores + offset, labels) < compute_cllr(scores, labels)


@pytest.mark.parametrize("decimals", [None, 1])
def test_operating_points_match_the_grouped_counts(decimals: int | None) -> None:
    """The sort-and-merge path of operating_points gives exactly the points the bootstrap's grouping gives."""
    from spkverif.metrics import GroupedScores, operating_points

    rng = np.random.default_rng(3)
    labels = rng.random(5000) < 0.2
    scores = rng.standard_normal(5000) + labels
    if decimals is not None:
        scores = np.round(scores, decimals)  # many ties, within and across the classes
    fast, grouped = operating_points(scores, labels), GroupedScores(scores, labels).points()
    for field in ("thresholds", "fnr", "fpr"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(grouped, field))
