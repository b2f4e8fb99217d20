"""What every back end shares: per-embedding preparation once, then trials in blocks.

A back end's `bind(enroll, test)` does the work that depends on one embedding
(normalising, projecting, cohort statistics) and returns a function that scores
a block of trials given as row indices; `score` streams blocks through it, so
memory depends on the block size, never on the number of trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry
from spkverif.io.specifiers import load_vectors
from spkverif.io.tables import read_table

BACKENDS: Registry = Registry("scoring method")
"""Every back end by name (`score --method NAME`); each back-end module registers its own."""

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Scorer(Protocol):
    def bind(self, enroll: np.ndarray, test: np.ndarray) -> PairScorer:
        """Prepare the embeddings; `test is enroll` when both come from one archive."""
        ...


def score_pairs(
    scorer: Scorer, enroll: np.ndarray, test: np.ndarray, enroll_index: np.ndarray, test_index: np.ndarray
) -> np.ndarray:
    """Score trials given as row indices in one call (small inputs, tests)."""
    return scorer.bind(enroll, test)(np.asarray(enroll_index), np.asarray(test_index))


def length_normalise(matrix: np.ndarray, norm: float = 1.0) -> np.ndarray:
    """Rows of (N, D) scaled to length `norm`; rows whose float32 length overflows (values near 1e38)
    are measured in float64 instead of becoming zeros."""
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.isfinite(lengths).all():
        wide = np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
        return (matrix.astype(np.float64) * (norm / wide)).astype(matrix.dtype)
    return matrix * (norm / np.maximum(lengths, 1e-12))


def paired_dot(
    enroll: np.ndarray, test: np.ndarray, enroll_index: np.ndarray, test_index: np.ndarray, block: int = 65536
) -> np.ndarray:
    """Row-wise dot products of enroll[enroll_index] and test[test_index], a block at a time."""
    scores = np.empty(len(enroll_index), dtype=np.float64)
    for start in range(0, len(enroll_index), block):
        stop = start + block
        left = enroll[enroll_index[start:stop]]
        right = test[test_index[start:stop]]
        scores[start:stop] = np.einsum("ij,ij->i", left, right)
    return scores


def mean_vector(rspecifier: str) -> np.ndarray:
    """The mean of every vector in an archive; an archive of one vector (Kaldi's ivector-mean) is its own mean."""
    _, vectors = load_vectors(rspecifier)
    return vectors.astype(np.float64).mean(axis=0)


def read_utt2spk(path: str) -> dict[str, str]:
    return {utt: fields[0] for utt, fields in read_table(path, min_fields=2, max_fields=2).items()}


def speaker_labels(keys: list[str], utt2spk_path: str, what: str) -> np.ndarray:
    """The speaker of each key, as integers; every key must be in utt2spk."""
    utt2spk = read_utt2spk(utt2spk_path)
    unknown = [key for key in keys if key not in utt2spk]
    if unknown:
        raise SpkverifError(
            f"{len(unknown)} of the {len(keys)} {what} embeddings have no speaker in utt2spk "
            f"(e.g. {', '.join(unknown[:3])})",
            utt2spk_path,
        )
    _, labels = np.unique(np.array([utt2spk[key] for key in keys]), return_inverse=True)
    return labels


def check_dimension(expected: int, found: int, what: str) -> None:
    if expected != found:
        raise SpkverifError(f"{what} has dimension {found}, the trial embeddings {expected}")
