"""Cosine scoring: length-normalise once, then one dot product per trial, in blocks."""

from __future__ import annotations

import numpy as np

from spkverif.backends.registry import BACKENDS


def length_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


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


class CosineScorer:
    """Cosine similarity of enrolment and test embeddings."""

    def score(
        self, enroll: np.ndarray, test: np.ndarray, enroll_index: np.ndarray, test_index: np.ndarray
    ) -> np.ndarray:
        return paired_dot(length_normalise(enroll), length_normalise(test), enroll_index, test_index)


@BACKENDS.register("cosine")
def build_cosine() -> CosineScorer:
    return CosineScorer()
