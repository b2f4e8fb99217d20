"""Detection metrics: EER, minimum and actual detection cost, Cllr, DET points, bootstrap intervals.

Operating points are taken at every distinct score (ties merged), deciding
"target" when score >= threshold, plus the point that rejects everything.

EER: where the ROC drawn through those points with straight segments crosses
FNR = FPR; the same value as interpolating scikit-learn's ROC curve.
minDCF: C_miss * P_miss * p + C_fa * P_fa * (1 - p), minimised over thresholds
and divided by min(C_miss * p, C_fa * (1 - p)), as Kaldi's compute_min_dcf.py.
actDCF: the same cost at the Bayes threshold log(C_fa (1 - p) / (C_miss p)),
meaningful when scores are log-likelihood ratios (PLDA, or calibrated).
Cllr: the mean cost of the scores read as LLRs, in bits (Brümmer & du Preez 2006).

Every count can carry a weight per trial, which is how the bootstrap resamples
without re-sorting: the scores are grouped once, each replicate only reweights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spkverif.base.errors import SpkverifError

P_TARGET = 0.01
"""The prior of a target trial that evaluations use (VoxCeleb's, NIST SRE's): the first of `report`'s
minDCF priors, a calibration's default decision prior, the minDCF that training validation logs."""


@dataclass
class OperatingPoints:
    thresholds: np.ndarray
    fnr: np.ndarray
    fpr: np.ndarray


def _checked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 scores and boolean labels of equal length, finite, with both classes present."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError("scores and labels differ in length")
    if not np.all(np.isfinite(scores)):
        raise SpkverifError("scores hold NaN or infinite values")
    if labels.all() or not labels.any():
        raise SpkverifError("evaluation needs both target and nontarget trials")
    return scores, labels


class GroupedScores:
    """Scores sorted into distinct values once; operating points for any trial weights."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        scores, self.labels = _checked(scores, labels)
        distinct, self.group = np.unique(scores, return_inverse=True)
        self.thresholds = np.append(distinct, np.inf)

    def points(self, weights: np.ndarray | None = None) -> OperatingPoints:
        """(threshold, FNR, FPR) at each distinct score ascending, then at +inf."""
        if weights is None:
            weights = np.ones(len(self.labels))
        groups = len(self.thresholds) - 1
        return self.points_from_counts(
            np.bincount(self.group, weights * self.labels, minlength=groups),
            np.bincount(self.group, weights * ~self.labels, minlength=groups),
        )

    def points_from_counts(self, target_weight: np.ndarray, nontarget_weight: np.ndarray) -> OperatingPoints:
        """Operating points from the (weighted) number of targets and non-targets at each distinct score."""
        return _points_from_cumulative(self.thresholds, np.cumsum(target_weight), np.cumsum(nontarget_weight))


def _points_from_cumulative(
    thresholds: np.ndarray, targets_below: np.ndarray, nontargets_below: np.ndarray
) -> OperatingPoints:
    """Operating points from the targets and non-targets scoring at or below each distinct score (running sums)."""
    misses = np.concatenate([[0.0], targets_below])
    rejected_nontargets = np.concatenate([[0.0], nontargets_below])
    total_targets, total_nontargets = misses[-1], rejected_nontargets[-1]
    if total_targets <= 0 or total_nontargets <= 0:
        raise SpkverifError("evaluation needs both target and nontarget trials")
    false_alarms = total_nontargets - rejected_nontargets
    return OperatingPoints(thresholds, misses / total_targets, false_alarms / total_nontargets)


def operating_points(scores: np.ndarray, labels: np.ndarray) -> OperatingPoints:
    """(threshold, FNR, FPR) at each distinct score, ascending, then at +inf.

    Target and non-target scores are sorted apart (two sorts of values, cheaper
    than one argsort), merged by a stable argsort of the two sorted runs (timsort
    merges them in one linear pass), and the running count of targets is read at
    the last trial of each run of equal scores: the same points as
    `GroupedScores(...).points()` without its unique/inverse pass and counting
    (which the bootstrap needs, a single evaluation does not).
    """
    scores, labels = _checked(scores, labels)
    targets = np.sort(scores[labels])
    merged = np.concatenate([targets, np.sort(scores[~labels])])
    order = np.argsort(merged, kind="stable")
    ordered = merged[order]
    last_of_value = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1)
    targets_below = np.cumsum(order < len(targets), dtype=np.int64)[last_of_value]
    return _points_from_cumulative(
        np.append(ordered[last_of_value], np.inf),
        targets_below.astype(np.float64),
        (last_of_value + 1 - targets_below).astype(np.float64),
    )


def eer_of(points: OperatingPoints) -> float:
    """Where the piecewise-linear ROC through the points crosses FNR = FPR."""
    gap = points.fpr - points.fnr
    crossing = int(np.argmax(gap <= 0))
    if crossing == 0:
        return float(points.fnr[0])
    before, after = gap[crossing - 1], gap[crossing]
    weight = before / (before - after)
    return float(points.fnr[crossing - 1] + weight * (points.fnr[crossing] - points.fnr[crossing - 1]))


def min_dcf_of(points: OperatingPoints, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    costs = c_miss * p_target * points.fnr + c_fa * (1 - p_target) * points.fpr
    return float(costs.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def eer_threshold(points: OperatingPoints) -> float:
    """The score threshold (accept at or above it) of the operating point nearest the EER:
    of the two points the ROC crosses FNR = FPR between, the one where they differ least."""
    gap = points.fpr - points.fnr
    crossing = int(np.argmax(gap <= 0))
    candidates = [crossing] if crossing == 0 else [crossing - 1, crossing]
    return float(points.thresholds[min(candidates, key=lambda i: abs(gap[i]))])


def min_dcf_threshold(points: OperatingPoints, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The score threshold (accept at or above it) where the detection cost at `p_target` is least;
    +inf where rejecting every trial costs least."""
    costs = c_miss * p_target * points.fnr + c_fa * (1 - p_target) * points.fpr
    return float(points.thresholds[int(np.argmin(costs))])


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate as a fraction (0.05 is 5%)."""
    return eer_of(operating_points(scores, labels))


def compute_min_dcf(
    scores: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised minimum detection cost at prior `p_target`."""
    return min_dcf_of(operating_points(scores, labels), p_target, c_miss, c_fa)


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR above which accepting costs less than rejecting."""
    return float(np.log(c_fa * (1 - p_target)) - np.log(c_miss * p_target))


def compute_act_dcf(
    llrs: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised detection cost of deciding "target" when LLR >= the Bayes threshold."""
    llrs, labels = _checked(llrs, labels)
    accept = llrs >= bayes_threshold(p_target, c_miss, c_fa)
    p_miss, p_fa = np.mean(~accept[labels]), np.mean(accept[~labels])
    return float(
        (c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa) / min(c_miss * p_target, c_fa * (1 - p_target))
    )


def compute_cllr(llrs: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits: 0 is perfect, 1 is a system that always says LLR = 0."""
    llrs, labels = _checked(llrs, labels)
    target_cost = np.mean(np.logaddexp(0.0, -llrs[labels]))
    nontarget_cost = np.mean(np.logaddexp(0.0, llrs[~labels]))
    return float((target_cost + nontarget_cost) / (2 * np.log(2)))


@dataclass
class Interval:
    low: float
    high: float


@dataclass
class BootstrapResult:
    """Percentile intervals for EER and each minDCF prior, from `replicates` resamples."""

    eer: Interval
    min_dcf: dict[float, Interval]
    replicates: int
    unit: str


def bootstrap(
    scores: np.ndarray,
    labels: np.ndarray,
    p_targets: tuple[float, ...] = (),
    replicates: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
    level: float = 0.95,
) -> BootstrapResult:
    """Bootstrap intervals for EER and minDCF.

    Without `clusters`, trials are resampled with replacement within each class
    (the trial list fixes how many targets it has). With `clusters` (an id per
    trial, e.g. the enrolment speaker), whole clusters are resampled and each
    trial counts as often as its cluster was drawn: trials sharing a speaker are
    correlated, and resampling them together keeps that in the interval's width.
    """
    grouped = GroupedScores(scores, labels)
    rng = np.random.default_rng(seed)
    eers = np.empty(replicates)
    dcfs = np.empty((len(p_targets), replicates))
    if clusters is not None:
        cluster_ids, cluster_of_trial = np.unique(np.asarray(clusters), return_inverse=True)
        count = len(cluster_ids)
    groups = len(grouped.thresholds) - 1
    target_groups, nontarget_groups = grouped.group[grouped.labels], grouped.group[~grouped.labels]
    done = 0
    while done < replicates:
        if clusters is not None:
            weights = np.bincount(rng.integers(0, count, count), minlength=count)[cluster_of_trial].astype(np.float64)
            if not weights[grouped.labels].any() or not weights[~grouped.labels].any():
                continue
            points = grouped.points(weights)
        else:
            points = grouped.points_from_counts(
                *(
                    np.bincount(members[rng.integers(0, len(members), len(members))], minlength=groups)
                    for members in (target_groups, nontarget_groups)
                )
            )
        eers[done] = eer_of(points)
        for row, p_target in enumerate(p_targets):
            dcfs[row, done] = min_dcf_of(points, p_target)
        done += 1
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def interval(values: np.ndarray) -> Interval:
        low, high = np.percentile(values, tails)
        return Interval(float(low), float(high))

    return BootstrapResult(
        eer=interval(eers),
        min_dcf={p: interval(dcfs[row]) for row, p in enumerate(p_targets)},
        replicates=replicates,
        unit="trial" if clusters is None else "cluster",
    )


@dataclass
class DetCurve:
    """Miss and false-alarm rates along the threshold, for a DET plot."""

    fnr: np.ndarray
    fpr: np.ndarray
    eer: float


def det_curve(scores: np.ndarray, labels: np.ndarray) -> DetCurve:
    points = operating_points(scores, labels)
    return DetCurve(points.fnr, points.fpr, eer_of(points))


def fit_calibration(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.5) -> tuple[float, float]:
    """(scale, offset) so that scale * score + offset are LLRs: prior-weighted logistic regression.

    The classes are weighted p_target and 1 - p_target whatever their counts
    (as BOSARIS does), so the fitted offset carries no trace of the list's own
    target proportion; p_target = 0.5 minimises Cllr on the held-out list.
    """
    scores, labels = _checked(scores, labels)
    weights, offset = fit_logistic_regression(scores[:, None], labels, p_target)
    return float(weights[0]), offset


def fit_logistic_regression(
    features: np.ndarray, labels: np.ndarray, p_target: float = 0.5
) -> tuple[np.ndarray, float]:
    """(weights (F,), offset) so that features @ weights + offset are LLRs; features (N, F), labels (N,) bool.

    Prior-weighted linear logistic regression (Brümmer's BOSARIS/FoCal calibration
    and fusion): classes weighted p_target and 1 - p_target whatever their counts.
    With F = 1 and the score as the feature it is `fit_calibration`; with quality
    measures beside the score it is quality-measure calibration (QMF). Columns are
    standardised for the optimiser and the weights mapped back. Raises
    `SpkverifError` when either class is empty.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (N, F) beside N labels, not {features.shape} and {labels.shape}")
    if labels.all() or not labels.any():
        raise SpkverifError("calibration needs both target and nontarget trials")
    prior_logit = np.log(p_target / (1 - p_target))
    sample_weights = np.where(labels, p_target / labels.sum(), (1 - p_target) / (~labels).sum())
    signs = np.where(labels, 1.0, -1.0)
    centre, spread = features.mean(axis=0), np.maximum(features.std(axis=0), 1e-12)
    standard = (features - centre) / spread
    count = features.shape[1]

    def objective(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        logits = standard @ parameters[:count] + parameters[count] + prior_logit
        margins = signs * logits
        loss = np.sum(sample_weights * np.logaddexp(0.0, -margins))
        slope = -sample_weights * signs * expit(-margins)
        return float(loss), np.append(standard.T @ slope, np.sum(slope))

    start = np.zeros(count + 1)
    start[0] = 1.0
    result = minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    weights = result.x[:count] / spread
    return weights, float(result.x[count] - weights @ centre)
