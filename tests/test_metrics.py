"""EER and minDCF against independent computations, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from spkverif.errors import SpkverifError
from spkverif.metrics import compute_eer, compute_min_dcf


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
