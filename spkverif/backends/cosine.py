"""Cosine scoring, optionally after subtracting a training set's mean embedding."""

from __future__ import annotations

import numpy as np

from spkverif.backends.base import BACKENDS, PairScorer, check_dimension, length_normalise, mean_vector, paired_dot


class CosineScorer:
    """Cosine similarity of (embedding - mean), length-normalised once per embedding."""

    def __init__(self, mean: np.ndarray | None = None):
        self.mean = mean

    def normalise(self, matrix: np.ndarray) -> np.ndarray:
        """Subtract the mean, then scale to unit length; float32, the precision embeddings carry."""
        if self.mean is not None:
            check_dimension(matrix.shape[1], len(self.mean), "the --mean vector")
            matrix = matrix - self.mean
        return length_normalise(matrix).astype(np.float32)

    def bind(self, enroll: np.ndarray, test: np.ndarray) -> PairScorer:
        left = self.normalise(enroll)
        right = left if test is enroll else self.normalise(test)
        return lambda enroll_index, test_index: paired_dot(left, right, enroll_index, test_index)


@BACKENDS.register("cosine")
def build_cosine(mean: str | None = None) -> CosineScorer:
    """Cosine similarity, no cohort, no training.

    `mean`: an rspecifier whose vectors' mean is subtracted first (e.g. the training set's embeddings).
    """
    return CosineScorer(mean_vector(mean) if mean else None)
