"""Figure 5: EER and minDCF on a million trials, beside scikit-learn's ROC, SpeechBrain's EER/minDCF and one argsort.

spkverif computes the operating points once (`operating_points`) and reads EER
and minDCF at two priors from them; scikit-learn's users call `roc_curve` and
interpolate; SpeechBrain's `EER` loops over every candidate threshold and its
`minDCF` broadcasts thresholds against scores, so both grow with the square of
the list and are run on a subsample (the same subsample for spkverif). The
floor is one `np.argsort` of the scores, which any exact method needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.common import Row, Section, interleaved
from spkverif.metrics import eer_of, min_dcf_of, operating_points

PRIORS = (0.01, 0.05)


@dataclass
class MetricSize:
    trials: int = 1_000_000
    speechbrain_trials: int = 5_000
    rounds: int = 5


def trial_scores(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float64 scores of `count` trials, one in ten a target, targets shifted by two standard deviations."""
    rng = np.random.default_rng(seed)
    labels = rng.random(count) < 0.1
    return rng.standard_normal(count) + 2.0 * labels, labels


def ours(scores: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    points = operating_points(scores, labels)
    return (eer_of(points), *(min_dcf_of(points, prior) for prior in PRIORS))


def scikit_learn(scores: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    """EER where the interpolated ROC crosses FNR = FPR, minDCF over its points (as recipes do with roc_curve)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    crossing = int(np.argmax(fnr <= fpr))
    before, after = fpr[crossing - 1] - fnr[crossing - 1], fpr[crossing] - fnr[crossing]
    weight = before / (before - after)
    eer = fnr[crossing - 1] + weight * (fnr[crossing] - fnr[crossing - 1])
    dcfs = [np.min(prior * fnr + (1 - prior) * fpr) / min(prior, 1 - prior) for prior in PRIORS]
    return (float(eer), *map(float, dcfs))


def speechbrain(scores: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    import torch
    from speechbrain.utils.metric_stats import EER, minDCF

    positive, negative = torch.from_numpy(scores[labels]).float(), torch.from_numpy(scores[~labels]).float()
    # SpeechBrain's minDCF is the raw cost; divided by min(p, 1 - p) it is the normalised minDCF the others give.
    dcfs = (float(minDCF(positive, negative, p_target=p)[0]) / min(p, 1 - p) for p in PRIORS)
    return (float(EER(positive, negative)[0]), *dcfs)


def _values(name: str, values: tuple[float, ...]) -> str:
    return f"{name}: EER {100 * values[0]:.4f}%, " + ", ".join(
        f"minDCF(p={prior:g}) {value:.5f}" for prior, value in zip(PRIORS, values[1:], strict=True)
    )


def run(size: MetricSize) -> Section:
    section = Section("metrics")
    scores, labels = trial_scores(size.trials)
    section.lines.append(
        f"{size.trials:,} trials (10% targets), EER + minDCF at p = {', '.join(map(str, PRIORS))}, median of "
        f"{size.rounds} interleaved rounds"
    )
    contestants = {"ours": lambda: ours(scores, labels), "argsort": lambda: np.argsort(scores)}
    section.lines.append(_values(f"spkverif ({size.trials:,})", ours(scores, labels)))
    try:
        section.lines.append(_values(f"scikit-learn roc_curve ({size.trials:,})", scikit_learn(scores, labels)))
        contestants["sklearn"] = lambda: scikit_learn(scores, labels)
    except ImportError as error:
        section.lines.append(f"scikit-learn not installed ({error}); its row is left out")
    seconds = interleaved(contestants, size.rounds)
    section.rows.append(
        Row(
            f"EER + 2 minDCF, {size.trials:,} trials",
            "s",
            seconds["ours"],
            "one np.argsort (floor)",
            seconds["argsort"],
        )
    )
    if "sklearn" in seconds:
        section.rows.append(
            Row(
                f"EER + 2 minDCF, {size.trials:,} trials",
                "s",
                seconds["ours"],
                "scikit-learn roc_curve",
                seconds["sklearn"],
            )
        )
    small_scores, small_labels = scores[: size.speechbrain_trials], labels[: size.speechbrain_trials]
    try:
        values = speechbrain(small_scores, small_labels)
    except ImportError as error:
        section.lines.append(f"SpeechBrain not installed ({error}); its row is left out")
    else:
        section.lines.append(
            _values(f"SpeechBrain EER/minDCF ({size.speechbrain_trials:,}, quadratic)", values)
            + " (its EER is (FAR + FRR) / 2 at the closest threshold, not the interpolated crossing)"
        )
        section.lines.append(_values(f"spkverif ({size.speechbrain_trials:,})", ours(small_scores, small_labels)))
        small = interleaved(
            {"ours": lambda: ours(small_scores, small_labels), "sb": lambda: speechbrain(small_scores, small_labels)},
            size.rounds,
        )
        section.rows.append(
            Row(
                f"EER + 2 minDCF, {size.speechbrain_trials:,} trials",
                "s",
                small["ours"],
                "SpeechBrain EER/minDCF",
                small["sb"],
            )
        )
    for line in section.lines[1:]:
        print(line, flush=True)
    return section
