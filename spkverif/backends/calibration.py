"""Score calibration to log-likelihood ratios, saved to a file that `verify` reads.

Two methods, both prior-weighted linear logistic regression fitted on labelled
held-out trials (`spkverif.metrics.fit_logistic_regression`; Brümmer's FoCal/BOSARIS):

- `linear`: LLR = a * score + b.
- `qmf` (quality-measure functions): LLR = a * score + sum_i c_i * q_i + b, where
  the q_i describe how reliable a trial is: the log durations of the shorter and
  the longer side, and the norms (before length normalisation) of the smaller and
  the larger embedding, and, with a cohort, the mean of each side's top-N cosine
  scores against the cohort (enrolment and test). A short or atypical recording makes
  scores shrink toward the middle; the quality terms let the calibration stretch them
  back. The idea and
  the choice of measures follow WeSpeaker's QMF score calibration and the
  quality-aware calibration of the VoxSRC systems (e.g. Thienpondt et al. 2021).

A calibration file is JSON: format, method, the feature names in order, weights,
offset, the fingerprint of the model whose scores it was fitted on, how many
trials, and LLR thresholds for a range of false-accept rates measured on the
held-out nontarget trials.

What a fit needs to mean something (`fit_calibration_file`; the constants below):

- at least `MIN_TRIALS_PER_CLASS` = 10 target and 10 nontarget trials, else refused.
  Ten events per estimated variable is the accepted floor for logistic-regression
  coefficients (Peduzzi et al. 1996, J Clin Epidemiol 49:1373); linear calibration
  estimates one (the scale, beside the offset), and the prior-weighted fit gives each
  class half the objective whatever its count, so the rule holds for each class, not
  only the rarer one. Fewer than 10 nontargets also resolve no false-accept rate below
  10% for `--fa-rate`. A calibration fitted on two trials gets a scale of 59: that
  is where the optimiser stopped, not a property of the system.
- QMF estimates one weight per feature: below `TRIALS_PER_WEIGHT` = 10 trials of each
  class per weight it is fitted, with a warning that its weights are unreliable.
- every feature must vary over the trials (a range above `CONSTANT_FEATURE` of its
  size): a constant column cannot be told from the offset, and fitted as it is it gets
  a weight of 1e7 to 1e9 (the fit standardises by its spread, which is rounding),
  which any trial where it differs turns into a nonsense LLR. A constant score is
  refused (there is nothing to calibrate); a constant quality measure (utterances all
  3 s long, embeddings all of norm 1) gets weight 0, with a warning.
- perfectly separated classes (every target's LLR at or above every nontarget's) are
  fitted with a warning: the likelihood then has no finite optimum and the weights
  grow without bound, so the fitted scale is unreliable; a score weight at or below
  0 (LLRs falling as scores rise: labels or scores reversed?) is warned about too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry
from spkverif.io.atomic import atomic_write
from spkverif.io.tables import read_json
from spkverif.metrics import P_TARGET, bayes_threshold, fit_logistic_regression

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "spkverif-calibration"

TRIALS_PER_WEIGHT = 10
"""Trials of each class per fitted weight below which a fit's weights are unreliable (Peduzzi et al. 1996)."""
MIN_TRIALS_PER_CLASS = TRIALS_PER_WEIGHT
"""Target trials, and nontarget trials, that any calibration needs: enough for its one scale."""
CONSTANT_FEATURE = 1e-9
"""A feature whose range over the trials is at most this fraction of its largest magnitude is constant
(far below the precision of any score or duration file: score files carry 6 decimals)."""


@dataclass
class TrialQuality:
    """What calibration sees of N trials: scores (N,), and for QMF per-side durations and embedding norms.

    `durations` (N, 2) are seconds of audio of the enrolment and test sides; `norms`
    (N, 2) the Euclidean norms of their embeddings before any normalisation;
    `cohort_means` (N, 2) the mean of each side's top-N cosine scores against a cohort
    (`spkverif.backends.snorm.CohortMeans`), when a cohort was given.
    """

    scores: np.ndarray
    durations: np.ndarray | None = None
    norms: np.ndarray | None = None
    cohort_means: np.ndarray | None = None


Measure = Callable[[TrialQuality], np.ndarray]
QUALITY_MEASURES: dict[str, Measure] = {}


def _measure(name: str) -> Callable[[Measure], Measure]:
    def register(function: Measure) -> Measure:
        QUALITY_MEASURES[name] = function
        return function

    return register


def _sides(values: np.ndarray | None, what: str) -> np.ndarray:
    if values is None:
        raise SpkverifError(f"quality-measure calibration needs the {what} of every trial's two sides")
    return np.asarray(values, dtype=np.float64)


@_measure("log_duration_min")
def log_duration_min(quality: TrialQuality) -> np.ndarray:
    """Log of the shorter side's duration in seconds."""
    return np.log(np.maximum(_sides(quality.durations, "durations").min(axis=1), 1e-3))


@_measure("log_duration_max")
def log_duration_max(quality: TrialQuality) -> np.ndarray:
    """Log of the longer side's duration in seconds."""
    return np.log(np.maximum(_sides(quality.durations, "durations").max(axis=1), 1e-3))


@_measure("norm_min")
def norm_min(quality: TrialQuality) -> np.ndarray:
    """The smaller of the two embeddings' norms."""
    return _sides(quality.norms, "embedding norms").min(axis=1)


@_measure("norm_max")
def norm_max(quality: TrialQuality) -> np.ndarray:
    """The larger of the two embeddings' norms."""
    return _sides(quality.norms, "embedding norms").max(axis=1)


@_measure("cohort_mean_enroll")
def cohort_mean_enroll(quality: TrialQuality) -> np.ndarray:
    """The enrolment side's mean of its top-N cosine scores against the cohort."""
    return _sides(quality.cohort_means, "cohort means (--cohort)")[:, 0]


@_measure("cohort_mean_test")
def cohort_mean_test(quality: TrialQuality) -> np.ndarray:
    """The test side's mean of its top-N cosine scores against the cohort."""
    return _sides(quality.cohort_means, "cohort means (--cohort)")[:, 1]


COHORT_MEASURES = ("cohort_mean_enroll", "cohort_mean_test")

CALIBRATIONS: Registry[Callable[[], tuple[str, ...]]] = Registry("calibration method")


@CALIBRATIONS.register("linear")
def linear() -> tuple[str, ...]:
    """LLR = a * score + b (logistic regression on the score alone)."""
    return ()


@CALIBRATIONS.register("qmf")
def qmf() -> tuple[str, ...]:
    """Quality measures beside the score: log durations and embedding norms (min and max of the two sides)."""
    return ("log_duration_min", "log_duration_max", "norm_min", "norm_max")


def _quality_measure(name: str) -> Measure:
    if name not in QUALITY_MEASURES:
        raise SpkverifError(f"unknown quality measure {name!r}; choose one of: {', '.join(sorted(QUALITY_MEASURES))}")
    return QUALITY_MEASURES[name]


def feature_matrix(quality: TrialQuality, measures: tuple[str, ...] | list[str]) -> np.ndarray:
    """(N, 1 + len(measures)): the score, then each quality measure by name."""
    columns = [np.asarray(quality.scores, dtype=np.float64)]
    columns += [_quality_measure(name)(quality) for name in measures]
    return np.stack(columns, axis=1)


@dataclass
class Calibration:
    """LLR = features @ weights + offset, features = [score, *measures]."""

    method: str
    measures: list[str]
    weights: list[float]
    offset: float
    fingerprint: str
    trials: dict[str, int] = field(default_factory=dict)
    fa_thresholds: list[list[float]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    cohort_top_n: int | None = None  # with cohort measures: the N of their top-N means

    @property
    def uses_cohort(self) -> bool:
        """Whether the LLR needs each side's cohort mean (a cohort must be given to apply it)."""
        return any(name in COHORT_MEASURES for name in self.measures)

    def llrs(self, quality: TrialQuality) -> np.ndarray:
        """Calibrated LLRs (N,) in nats."""
        return feature_matrix(quality, self.measures) @ np.asarray(self.weights) + self.offset

    def threshold(self, p_target: float | None = None, fa_rate: float | None = None) -> tuple[float, str]:
        """The LLR threshold for a decision, and a sentence saying where it comes from.

        At a prior `p_target` it is the Bayes threshold log((1 - p) / p) (costs 1 and 1);
        at a false-accept rate it is the lowest threshold whose rate on the held-out
        nontarget trials does not exceed it (the largest tabulated rate at or below the
        one asked for). Raises `SpkverifError` for a rate the held-out trials cannot resolve.
        """
        if fa_rate is None:
            prior = P_TARGET if p_target is None else p_target
            if not 0 < prior < 1:
                raise SpkverifError(f"--p-target must be in (0, 1), not {prior:g}")
            return bayes_threshold(prior), f"Bayes threshold at p_target={prior:g}"
        usable = [(rate, value) for rate, value in self.fa_thresholds if rate <= fa_rate]
        if not usable:
            lowest = min(rate for rate, _ in self.fa_thresholds)
            raise SpkverifError(
                f"--fa-rate {fa_rate:g} is below what the calibration's {self.trials.get('nontarget', 0)} nontarget "
                f"trials resolve ({lowest:.2g})"
            )
        rate, value = max(usable)
        return value, f"false-accept rate {rate:.3g} on the calibration's nontarget trials"

    def save(self, path: str | Path) -> None:
        """Write the calibration as JSON, atomically."""
        with atomic_write(path) as handle:
            json.dump({"format": CALIBRATION_FORMAT, "version": 1, **asdict(self)}, handle, indent=2)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> Calibration:
        """Read a calibration; with `fingerprint`, refuse one fitted on another model's scores.

        Raises `SpkverifError` for a missing, malformed or foreign file, or a fingerprint mismatch.
        """
        path = Path(path)
        if not path.is_file():
            raise SpkverifError("no such calibration file", path)
        payload = read_json(path, "the calibration file")
        if not isinstance(payload, dict) or payload.get("format") != CALIBRATION_FORMAT:
            raise SpkverifError("not a calibration file written by `spkverif report --save-calibration`", path)
        calibration = cls(**_checked_fields(payload, path))
        if len(calibration.weights) != 1 + len(calibration.measures):
            raise SpkverifError("malformed calibration file: one weight per feature expected", path)
        for name in calibration.measures:
            _quality_measure(name)
        if calibration.uses_cohort and calibration.cohort_top_n is None:
            raise SpkverifError("malformed calibration file: cohort measures without 'cohort_top_n'", path)
        if fingerprint is not None and calibration.fingerprint != fingerprint:
            raise SpkverifError(
                f"calibrated for model {calibration.fingerprint}, not for this model ({fingerprint}); "
                "calibrate on this model's scores",
                path,
            )
        return calibration


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Each field of a calibration file: whether it must be there, what it must be, and the check.
_FIELDS: dict[str, tuple[bool, str, Callable[[Any], bool]]] = {
    "method": (True, "a name", lambda value: isinstance(value, str)),
    "measures": (
        True,
        "a list of names",
        lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
    ),
    "weights": (True, "a list of numbers", lambda value: isinstance(value, list) and all(map(_is_number, value))),
    "offset": (True, "a number", _is_number),
    "fingerprint": (True, "a string", lambda value: isinstance(value, str)),
    "trials": (
        False,
        "counts by label",
        lambda value: isinstance(value, dict) and all(map(_is_number, value.values())),
    ),
    "fa_thresholds": (
        False,
        "a list of [rate, LLR] pairs with rates in (0, 1]",
        lambda value: (
            isinstance(value, list)
            and all(
                isinstance(pair, list) and len(pair) == 2 and all(map(_is_number, pair)) and 0 < pair[0] <= 1
                for pair in value
            )
        ),
    ),
    "source": (False, "a mapping", lambda value: isinstance(value, dict)),
    "cohort_top_n": (
        False,
        "a whole number of cohort scores, at least 1",
        lambda value: value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
    ),
}


def _checked_fields(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields of a calibration file's JSON object, each checked against `_FIELDS`."""
    unknown = sorted(set(payload) - set(_FIELDS) - {"format", "version"})
    if unknown:
        raise SpkverifError(f"malformed calibration file: unknown field {unknown[0]!r}", path)
    for name, (required, what, valid) in _FIELDS.items():
        if name not in payload:
            if required:
                raise SpkverifError(f"malformed calibration file: no {name!r}", path)
        elif not valid(payload[name]):
            raise SpkverifError(f"malformed calibration file: {name!r} must be {what}", path)
    return {name: payload[name] for name in _FIELDS if name in payload}


def false_accept_thresholds(nontarget_llrs: np.ndarray, points: int = 60) -> list[list[float]]:
    """[rate, threshold] pairs: accepting LLR >= threshold accepts at most `rate` of these nontarget trials.

    Rates are spaced geometrically from 1/N to 0.5 (N nontarget trials).
    """
    ordered = np.sort(np.asarray(nontarget_llrs, dtype=np.float64))[::-1]
    count = len(ordered)
    table = []
    for rate in np.geomspace(1.0 / count, 0.5, points):
        allowed = int(np.floor(rate * count + 1e-9))
        threshold = float(np.nextafter(ordered[allowed], np.inf)) if allowed < count else float(ordered[-1])
        table.append([float(rate), threshold])
    return table


def fit_calibration_file(
    quality: TrialQuality,
    labels: np.ndarray,
    method: str,
    fingerprint: str,
    source: dict[str, Any] | None = None,
    cohort_top_n: int | None = None,
) -> Calibration:
    """Fit `method` (`linear` or `qmf`) on labelled held-out trials; labels (N,) bool, True for target.

    QMF with `cohort_top_n` (and `quality.cohort_means`) adds the two cohort-mean measures.
    Raises `SpkverifError` (at `source["trials"]` when given) for fewer than
    `MIN_TRIALS_PER_CLASS` trials of either class or a feature that does not vary;
    logs a warning for perfectly separated classes, a score weight at or below 0, and
    QMF on fewer than `TRIALS_PER_WEIGHT` trials of each class per weight.
    """
    measures = list(CALIBRATIONS.get(method)())
    if cohort_top_n is not None and method != "linear":
        measures += COHORT_MEASURES
    labels = np.asarray(labels, dtype=bool)
    where = (source or {}).get("trials")
    _require_trials(labels, where)
    features = feature_matrix(quality, measures)
    varying = _varying_features(features, measures, where)
    weights = np.zeros(features.shape[1])
    weights[varying], offset = fit_logistic_regression(features[:, varying], labels, 0.5)
    calibration = Calibration(
        method,
        measures,
        [float(w) for w in weights],
        offset,
        fingerprint,
        {"target": int(labels.sum()), "nontarget": int((~labels).sum())},
        source=source or {},
        cohort_top_n=cohort_top_n if any(name in COHORT_MEASURES for name in measures) else None,
    )
    llrs = calibration.llrs(quality)
    calibration.fa_thresholds = false_accept_thresholds(llrs[~labels])
    _warn_if_unreliable(calibration, llrs, labels, int(varying.sum()))
    return calibration


def _require_trials(labels: np.ndarray, where: str | None) -> None:
    """At least `MIN_TRIALS_PER_CLASS` target and nontarget trials, or `SpkverifError`."""
    targets, nontargets = int(labels.sum()), int((~labels).sum())
    if min(targets, nontargets) < MIN_TRIALS_PER_CLASS:
        raise SpkverifError(
            f"calibration needs at least {MIN_TRIALS_PER_CLASS} target and {MIN_TRIALS_PER_CLASS} nontarget trials "
            f"(a logistic fit on fewer follows those few trials, not the system); the held-out trials have "
            f"{targets} target and {nontargets} nontarget",
            where,
        )


def _varying_features(features: np.ndarray, measures: list[str], where: str | None) -> np.ndarray:
    """(F,) bool: which columns of (N, F) `features` (the score, then `measures`) vary over the trials.

    A constant score raises `SpkverifError`; constant quality measures are named in a
    warning (they will get weight 0). Constant: a range at most `CONSTANT_FEATURE` of
    the column's largest magnitude.
    """
    varying = np.ptp(features, axis=0) > CONSTANT_FEATURE * np.abs(features).max(axis=0)
    if not varying[0]:
        raise SpkverifError(
            f"every one of the {len(features)} held-out trials has the score {features[0, 0]:.6g}: calibration "
            "needs scores that differ, to fit a scale",
            where,
        )
    if not varying.all():
        values = zip(measures, features[0, 1:], varying[1:], strict=True)
        constant = [f"{name} = {value:.6g}" for name, value, keep in values if not keep]
        logger.warning(
            "the quality measure(s) %s are the same for all %d calibration trials: a weight cannot be told from the "
            "offset, so they get weight 0 (they say nothing about these trials)",
            ", ".join(constant), len(features),
        )  # fmt: skip
    return varying


def _warn_if_unreliable(calibration: Calibration, llrs: np.ndarray, labels: np.ndarray, weights: int) -> None:
    """One warning line for each reason the `weights` fitted may mean nothing (see the module's docstring)."""
    targets, nontargets = int(labels.sum()), int((~labels).sum())
    scale = calibration.weights[0]
    if min(targets, nontargets) < TRIALS_PER_WEIGHT * weights:
        logger.warning(
            "%s calibration fits %d weights on %d target and %d nontarget trials, fewer than %d of each per weight: "
            "its quality weights are unreliable; calibrate on at least %d of each, or with --calibration-method linear",
            calibration.method, weights, targets, nontargets, TRIALS_PER_WEIGHT, TRIALS_PER_WEIGHT * weights,
        )  # fmt: skip
    if llrs[labels].min() >= llrs[~labels].max():
        logger.warning(
            "the %d target and %d nontarget calibration trials are perfectly separated: logistic regression has no "
            "finite optimum there, and the fitted score weight %.3g is where the optimiser stopped, not an estimate "
            "(unreliable); calibrate on more trials, with some errors among them",
            targets, nontargets, scale,
        )  # fmt: skip
    if scale <= 0:
        logger.warning(
            "the fitted score weight is %.3g, not positive: the calibrated LLR falls as the score rises; are the "
            "trial labels or the scores reversed?",
            scale,
        )
