"""Detection metrics: EER and minimum detection cost.

Operating points are taken at every distinct score (ties merged), deciding
"target" when score >= threshold, plus the point that rejects everything.

EER: where the ROC drawn through those points with straight segments crosses
FNR = FPR; the same value as interpolating scikit-learn's ROC curve.
minDCF: C_miss * P_miss * p + C_fa * P_fa * (1 - p), minimised over thresholds
and divided by min(C_miss * p, C_fa * (1 - p)), as Kaldi's compute_min_dcf.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spkverif.errors import SpkverifError


@dataclass
class OperatingPoints:
    thresholds: np.ndarray
    fnr: np.ndarray
    fpr: np.ndarray


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError("scores and labels differ in length")
    if not np.all(np.isfinite(scores)):
        raise SpkverifError("scores hold NaN or infinite values")
    targets, nontargets = np.sort(scores[labels]), np.sort(scores[~labels])
    if len(targets) == 0 or len(nontargets) == 0:
        raise SpkverifError("evaluation needs both target and nontarget trials")
    return targets, nontargets


def operating_points(scores: np.ndarray, labels: np.ndarray) -> OperatingPoints:
    """(threshold, FNR, FPR) at each distinct score, ascending, then at +inf."""
    targets, nontargets = _split(scores, labels)
    thresholds = np.append(np.unique(np.concatenate([targets, nontargets])), np.inf)
    misses = np.searchsorted(targets, thresholds, side="left")
    false_alarms = len(nontargets) - np.searchsorted(nontargets, thresholds, side="left")
    return OperatingPoints(thresholds, misses / len(targets), false_alarms / len(nontargets))


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate as a fraction (0.05 is 5%)."""
    points = operating_points(scores, labels)
    gap = points.fpr - points.fnr
    crossing = int(np.argmax(gap <= 0))
    if crossing == 0:
        return float(points.fnr[0])
    before, after = gap[crossing - 1], gap[crossing]
    weight = before / (before - after)
    return float(points.fnr[crossing - 1] + weight * (points.fnr[crossing] - points.fnr[crossing - 1]))


def compute_min_dcf(
    scores: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised minimum detection cost at prior `p_target`."""
    points = operating_points(scores, labels)
    costs = c_miss * p_target * points.fnr + c_fa * (1 - p_target) * points.fpr
    return float(costs.min() / min(c_miss * p_target, c_fa * (1 - p_target)))
