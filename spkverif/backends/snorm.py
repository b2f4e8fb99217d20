"""Symmetric (S-norm) and adaptive symmetric (AS-norm) score normalisation against a cohort.

    s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

where mu_e, sigma_e are the mean and standard deviation (population, ddof = 0,
as WeSpeaker) of the cosine scores of the enrolment embedding against the
cohort, over the whole cohort (S-norm) or only its `top_n` highest scores
(AS-norm, Matejka et al. 2017), and likewise for the test embedding.

The statistics depend on one embedding only, so they are computed once per
embedding, lazily as trial blocks name it, a block of embeddings at a time:
a (block x cohort) score matrix, never (embeddings x cohort).

The smallest inputs that give these statistics a meaning (each refused below, with
`SpkverifError`; the constants below are the limits):

- the cohort: at least `MIN_COHORT_SIZE` = 2 entries (embeddings, or speakers with
  `cohort_utt2spk`), not all pointing the same way after length normalisation: a
  standard deviation of one value, or of equal values, is 0, and s-norm divides by it;
- AS-norm's `top_n`: from `MIN_TOP_N` = 2 (the same reason, per side) to the cohort's
  size (more than the cohort is refused, not clamped: the user asked for scores that
  do not exist, and a silent clamp would make two `--top-n` values give one result);
- each embedding: its top-N cohort scores must differ by more than float32 rounding
  (`SCORE_RESOLUTION`, one float32 step at 1, the largest cosine): a zero embedding,
  or a top N of identical cohort entries, gives a standard deviation of 0 and is
  refused when its trials are scored, naming the embedding's place in its archive.

The QMF cohort mean (`CohortMeans`) takes no standard deviation: there one cohort
entry and `top_n` = `MIN_MEAN_TOP_N` = 1 suffice.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spkverif.backends.base import BACKENDS, PairScorer, check_dimension, mean_vector, paired_dot, speaker_labels
from spkverif.backends.cosine import CosineScorer
from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count
from spkverif.io.specifiers import load_vectors

logger = logging.getLogger(__name__)

TOP_N = 300
"""AS-norm's `top_n` (`score --top-n`), and the QMF cohort mean's (`report --top-n`), unless told: WeSpeaker's."""
MIN_COHORT_SIZE = 2
"""Cohort entries needed for a standard deviation of the cohort scores (s-norm divides by it)."""
MIN_TOP_N = 2
"""AS-norm's smallest `top_n`: a standard deviation needs two scores per side."""
MIN_MEAN_TOP_N = 1
"""The QMF cohort mean's smallest `top_n`: a mean is defined from one score."""
SCORE_RESOLUTION = float(np.finfo(np.float32).eps)
"""Cosine scores are float32 in [-1, 1]: spreads below one float32 step at 1 are rounding, not signal."""


SELECTION_THREADS = max(1, min(os.cpu_count() or 1, 8))


@functools.cache
def selection_pool() -> ThreadPoolExecutor:
    """Threads for the row selections: numpy releases the GIL there, so each core takes a share of the rows."""
    return ThreadPoolExecutor(max_workers=SELECTION_THREADS)


def parts(rows: int) -> int:
    """Into how many thread shares a block of `rows` is split: one per core, at least 256 rows each."""
    return min(SELECTION_THREADS, max(1, rows // 256))


def top_statistics(scores: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0, float64) of the `top_n` largest values of each row of (N, C) `scores`.

    The selection is a partition (introselect), not a sort, done in place: `scores` is
    overwritten, which spares a copy of the whole matrix per block.
    """
    if top_n < scores.shape[1]:
        kth = scores.shape[1] - top_n
        scores.partition(kth, axis=1)
        scores = scores[:, kth:]
    return scores.mean(axis=1, dtype=np.float64), scores.std(axis=1, dtype=np.float64)


class CohortStatistics:
    """Mean and standard deviation of each embedding's top-n cohort scores, filled in on demand.

    Each block of embeddings is scored against the cohort into one reused
    (block x cohort) float32 buffer (no fresh allocation to page in per block),
    then its rows are split over `SELECTION_THREADS` threads, each selecting its
    rows' top-n in place and reducing them to mean and standard deviation.

    `spread_of` names the embeddings ("enrolment", "test") when their standard
    deviations will be divided by: `ensure` then raises `SpkverifError` for an
    embedding whose top-n scores do not differ (standard deviation below
    `SCORE_RESOLUTION`); None (the QMF cohort mean) checks nothing.
    """

    def __init__(
        self, embeddings: np.ndarray, cohort: np.ndarray, top_n: int, block: int = 4096, spread_of: str | None = None
    ):
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.cohort_transposed = np.ascontiguousarray(cohort, dtype=np.float32).T
        self.top_n = top_n
        self.block = block
        self.spread_of = spread_of
        self.mean = np.full(len(embeddings), np.nan)
        self.std = np.full(len(embeddings), np.nan)

    def ensure(self, indices: np.ndarray) -> None:
        """Compute the statistics of every embedding in `indices` that lacks them."""
        wanted = np.unique(indices)
        wanted = wanted[np.isnan(self.mean[wanted])]
        if not len(wanted):
            return
        pool = selection_pool()
        buffer = np.empty((min(self.block, len(wanted)), self.cohort_transposed.shape[1]), dtype=np.float32)
        for start in range(0, len(wanted), self.block):
            rows = wanted[start : start + self.block]
            scores = np.matmul(self.embeddings[rows], self.cohort_transposed, out=buffer[: len(rows)])
            shares = list(itertools.pairwise(np.linspace(0, len(rows), parts(len(rows)) + 1).astype(int)))
            statistics = pool.map(lambda share, block=scores: top_statistics(block[slice(*share)], self.top_n), shares)
            for (low, high), (mean, std) in zip(shares, statistics, strict=True):
                self.mean[rows[low:high]] = mean
                self.std[rows[low:high]] = std
            if self.spread_of is not None:
                self._require_spread(rows)

    def _require_spread(self, rows: np.ndarray) -> None:
        flat = rows[self.std[rows] < SCORE_RESOLUTION]
        if len(flat):
            raise SpkverifError(
                f"s-norm cannot normalise embedding {flat[0] + 1} of the {self.spread_of} embeddings (in archive "
                f"order{f', and {len(flat) - 1} more' if len(flat) > 1 else ''}): its top {self.top_n} cohort "
                "scores are all equal (standard deviation 0: a zero embedding, or identical cohort embeddings); "
                f"s-norm needs a nonzero embedding whose top {self.top_n} cohort scores differ"
            )


class CohortNormScorer:
    """Cosine scores normalised by cohort statistics of both sides of each trial."""

    def __init__(
        self,
        cohort: np.ndarray,
        top_n: int | None,
        cosine: CosineScorer,
        block: int = 4096,
        source: str | None = None,
        per_speaker: bool = False,
    ):
        """`cohort` (C, D) raw; `top_n` None for S-norm. `SpkverifError` (at `source`) as `check_cohort` says."""
        self.cosine = cosine
        self.cohort = cosine.normalise(cohort)
        check_cohort(self.cohort, top_n, source, per_speaker)
        self.top_n = len(cohort) if top_n is None else top_n
        self.block = block

    def bind(self, enroll: np.ndarray, test: np.ndarray) -> PairScorer:
        check_dimension(enroll.shape[1], self.cohort.shape[1], "the cohort")
        left = self.cosine.normalise(enroll)
        right = left if test is enroll else self.cosine.normalise(test)
        same = test is enroll
        left_stats = CohortStatistics(left, self.cohort, self.top_n, self.block, "trial" if same else "enrolment")
        right_stats = left_stats if same else CohortStatistics(right, self.cohort, self.top_n, self.block, "test")

        def score(enroll_index: np.ndarray, test_index: np.ndarray) -> np.ndarray:
            left_stats.ensure(enroll_index)
            right_stats.ensure(test_index)
            raw = paired_dot(left, right, enroll_index, test_index)
            return 0.5 * (
                (raw - left_stats.mean[enroll_index]) / left_stats.std[enroll_index]
                + (raw - right_stats.mean[test_index]) / right_stats.std[test_index]
            )

        return score


def load_cohort(rspecifier: str, utt2spk: str | None, cosine: CosineScorer) -> np.ndarray:
    """The cohort's embeddings; with utt2spk, one per speaker: the mean of its normalised utterances."""
    keys, vectors = load_vectors(rspecifier)
    if utt2spk is None:
        return vectors
    speakers = speaker_labels(keys, utt2spk, "cohort")
    normalised = cosine.normalise(vectors).astype(np.float64)
    sums = np.zeros((speakers.max() + 1, vectors.shape[1]))
    np.add.at(sums, speakers, normalised)
    logger.info("cohort: %d utterances averaged into %d speakers", len(keys), len(sums))
    return sums / np.bincount(speakers)[:, None]


class CohortMeans:
    """The mean of an embedding's `top_n` highest cosine scores against a cohort: the AS-norm
    statistic mu, used alone as a quality measure of QMF calibration (the "imposter mean" of
    the VoxSRC systems, e.g. Thienpondt et al. 2021). The cohort is read as `score --method
    asnorm` reads it (an rspecifier; with `cohort_utt2spk`, one mean vector per speaker)."""

    def __init__(self, cohort: str, cohort_utt2spk: str | None, top_n: int):
        self.cosine = CosineScorer()
        self.cohort = self.cosine.normalise(load_cohort(cohort, cohort_utt2spk, self.cosine))
        if not MIN_MEAN_TOP_N <= top_n <= len(self.cohort):
            raise SpkverifError(
                f"--top-n {top_n} must be between {MIN_MEAN_TOP_N} and the cohort's size, {len(self.cohort)}", cohort
            )
        self.top_n = top_n

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) float64 means for embeddings (N, D)."""
        check_dimension(embeddings.shape[1], self.cohort.shape[1], "the cohort")
        statistics = CohortStatistics(self.cosine.normalise(embeddings), self.cohort, self.top_n)
        statistics.ensure(np.arange(len(embeddings)))
        return statistics.mean


def check_cohort(cohort: np.ndarray, top_n: int | None, source: str | None, per_speaker: bool) -> None:
    """Refuse a cohort (C, D), length-normalised, too small or too alike for s-norm's standard deviations.

    `top_n` None is S-norm (the whole cohort). Raises `SpkverifError` (at `source`)
    for fewer than `MIN_COHORT_SIZE` entries, a `top_n` outside `MIN_TOP_N`..C, or
    entries that all point the same way (within `SCORE_RESOLUTION`).
    """
    entries = "speakers" if per_speaker else "embeddings"
    size = len(cohort)
    if size < MIN_COHORT_SIZE:
        raise SpkverifError(
            f"score normalisation needs at least {MIN_COHORT_SIZE} cohort {entries} (it divides by the standard "
            f"deviation of the cohort scores); the cohort has {size}",
            source,
        )
    if top_n is not None and top_n > size:
        raise SpkverifError(
            f"--top-n {top_n} must be between 1 and the cohort's size, {size} (and at least {MIN_TOP_N} for AS-norm)",
            source,
        )
    if top_n is not None and top_n < MIN_TOP_N:
        raise SpkverifError(
            f"--top-n {top_n} is too few for AS-norm: the standard deviation of each side's top scores needs at "
            f"least {MIN_TOP_N} of them; use --top-n {MIN_TOP_N} to {size} (the cohort's size)"
        )
    if np.ptp(cohort, axis=0).max() <= SCORE_RESOLUTION:
        raise SpkverifError(
            f"the {size} cohort {entries} all point the same way after length normalisation, so every embedding "
            f"scores the same against each and s-norm would divide by a standard deviation of 0; it needs at least "
            f"{MIN_COHORT_SIZE} cohort {entries} that differ",
            source,
        )


def _build(cohort: str | None, cohort_utt2spk: str | None, mean: str | None, top_n: int | None) -> CohortNormScorer:
    if cohort is None:
        raise SpkverifError("score normalisation needs a cohort: --cohort scp:cohort.scp")
    cosine = CosineScorer(mean_vector(mean) if mean else None)
    vectors = load_cohort(cohort, cohort_utt2spk, cosine)
    return CohortNormScorer(vectors, top_n, cosine, source=cohort, per_speaker=cohort_utt2spk is not None)


@BACKENDS.register("snorm")
def build_snorm(
    cohort: str | None = None, cohort_utt2spk: str | None = None, mean: str | None = None
) -> CohortNormScorer:
    """S-norm over the whole --cohort (an rspecifier; with --cohort-utt2spk, averaged per speaker)."""
    return _build(cohort, cohort_utt2spk, mean, None)


@BACKENDS.register("asnorm")
def build_asnorm(
    cohort: str | None = None, cohort_utt2spk: str | None = None, mean: str | None = None, top_n: Count = TOP_N
) -> CohortNormScorer:
    """AS-norm over each side's --top-n closest cohort entries (WeSpeaker's number by default; the paper used 400)."""
    return _build(cohort, cohort_utt2spk, mean, top_n)
