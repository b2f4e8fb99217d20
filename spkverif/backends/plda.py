"""PLDA scoring: global mean, optional LDA, length normalisation, then a two-covariance PLDA.

The two-covariance model (Brümmer & de Villiers 2010; Sizov et al. 2014): a
speaker is a point y ~ N(mu, B) and each of its embeddings x = y + e with
e ~ N(0, W). B and W are learned by EM on a data directory's embeddings; a
trial is scored by the log-likelihood ratio of "same speaker" against
"different speakers", in closed form after diagonalising B and W together.

The model file (`--plda-model`) holds the whole chain (mean, LDA, B, W, mu),
so scoring needs nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse

from spkverif.backends.base import PairScorer, check_dimension, length_normalise, paired_dot, speaker_labels
from spkverif.backends.registry import BACKENDS
from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.specifiers import load_vectors
from spkverif.registry import Count

logger = logging.getLogger(__name__)

FORMAT = "spkverif-plda-1"


def _class_sums(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums of rows and per-class counts, through a sparse indicator matrix."""
    classes = int(labels.max()) + 1
    indicator = scipy.sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(classes, len(labels))
    )
    return np.asarray(indicator @ vectors), np.bincount(labels, minlength=classes)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2


def _floored(covariance: np.ndarray, relative: float = 1e-6) -> np.ndarray:
    """Symmetric, with a ridge so that fewer speakers than dimensions cannot make it singular."""
    covariance = _symmetric(covariance)
    return covariance + np.eye(len(covariance)) * relative * np.trace(covariance) / len(covariance)


def train_lda(vectors: np.ndarray, labels: np.ndarray, dim: int) -> np.ndarray:
    """Columns: the `dim` directions maximising between- over within-class variance, within-whitened."""
    sums, counts = _class_sums(vectors, labels)
    means = sums / counts[:, None]
    centred = vectors - means[labels]
    within = centred.T @ centred / len(vectors)
    grand = vectors.mean(axis=0)
    between = ((means - grand).T * counts) @ (means - grand) / len(vectors)
    _, vectors_ = scipy.linalg.eigh(_symmetric(between), _floored(within))
    return vectors_[:, ::-1][:, :dim]


def train_two_covariance(
    vectors: np.ndarray, labels: np.ndarray, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for (mu, between B, within W) of the two-covariance model; returns (mu, B, W)."""
    sums, counts = _class_sums(vectors, labels)
    speakers, total = len(counts), len(vectors)
    means = sums / counts[:, None]
    centred = vectors - means[labels]
    within = _floored(centred.T @ centred / total)
    mu = means.mean(axis=0)
    between = _floored(np.cov(means, rowvar=False, bias=True))
    scatter = vectors.T @ vectors
    for _ in range(iterations):
        between_precision = np.linalg.inv(between)
        within_precision = np.linalg.inv(within)
        prior_term = between_precision @ mu
        expected = np.empty_like(means)
        second_moment = np.zeros_like(between)
        weighted_second_moment = np.zeros_like(between)
        for count in np.unique(counts):
            members = counts == count
            posterior_covariance = np.linalg.inv(between_precision + count * within_precision)
            posterior_mean = (prior_term + sums[members] @ within_precision) @ posterior_covariance
            expected[members] = posterior_mean
            moment = members.sum() * posterior_covariance + posterior_mean.T @ posterior_mean
            second_moment += moment
            weighted_second_moment += count * moment
        mu = expected.mean(axis=0)
        between = _floored(second_moment / speakers - np.outer(mu, mu))
        cross = sums.T @ expected
        within = _floored((scatter - cross - cross.T + weighted_second_moment) / total)
    return mu, between, within


@dataclass
class PldaModel:
    """The scoring chain: centre by `mean`, project by `lda`, scale to norm sqrt(dim), then PLDA."""

    mean: np.ndarray
    lda: np.ndarray
    plda_mean: np.ndarray
    between: np.ndarray
    within: np.ndarray

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        check_dimension(embeddings.shape[1], len(self.mean), "the PLDA model")
        projected = (embeddings.astype(np.float64) - self.mean) @ self.lda
        return length_normalise(projected, np.sqrt(projected.shape[1]))

    def save(self, path: str | Path) -> None:
        with atomic_write(path, "wb") as handle:
            np.savez(handle, format=np.array(FORMAT), **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> PldaModel:
        if not Path(path).is_file():
            raise SpkverifError("no such PLDA model (train one with --train-plda)", path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data or str(data["format"]) != FORMAT:
                    raise SpkverifError(f"not a {FORMAT} model file", path)
                return cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError) as error:
            raise SpkverifError(f"cannot read the PLDA model: {error}", path) from None

    @classmethod
    def train(cls, embeddings: np.ndarray, labels: np.ndarray, lda_dim: int | None, iterations: int) -> PldaModel:
        speakers, dim = int(labels.max()) + 1, embeddings.shape[1]
        if speakers < 2 or len(embeddings) <= speakers:
            raise SpkverifError(
                f"PLDA needs at least two speakers and more embeddings than speakers; got {speakers} speakers "
                f"and {len(embeddings)} embeddings"
            )
        mean = embeddings.astype(np.float64).mean(axis=0)
        centred = embeddings - mean
        lda = np.eye(dim)
        if lda_dim is not None:
            if not 1 <= lda_dim <= min(dim, speakers - 1):
                raise SpkverifError(
                    f"--lda-dim {lda_dim} must be between 1 and min(dimension {dim}, speakers - 1 = {speakers - 1})"
                )
            lda = train_lda(centred, labels, lda_dim)
        model = cls(mean, lda, np.zeros(lda.shape[1]), np.eye(lda.shape[1]), np.eye(lda.shape[1]))
        model.plda_mean, model.between, model.within = train_two_covariance(
            model.transform(embeddings), labels, iterations
        )
        return model


class PldaScorer:
    """Log-likelihood ratios of the two-covariance PLDA, vectorised per trial block.

    With B and W diagonalised together (V' W V = I, V' B V = diag(psi)) and
    u = V'(x - mu), the LLR of a pair (a, b) is, summed over dimensions,
    const + Q (a^2 + b^2) + P a b, so each trial costs one dot product.
    """

    def __init__(self, model: PldaModel):
        self.model = model
        psi, basis = scipy.linalg.eigh(model.between, model.within)
        psi = np.maximum(psi, 0.0)
        self.basis = basis
        self.quadratic = -0.5 * ((psi + 1) / (2 * psi + 1) - 1 / (psi + 1))
        self.cross = psi / (2 * psi + 1)
        self.constant = float(np.sum(np.log(psi + 1) - 0.5 * np.log(2 * psi + 1)))

    def _side(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coordinates = (self.model.transform(embeddings) - self.model.plda_mean) @ self.basis
        return coordinates, coordinates * self.cross, (coordinates**2) @ self.quadratic

    def bind(self, enroll: np.ndarray, test: np.ndarray) -> PairScorer:
        left, left_scaled, left_self = self._side(enroll)
        right, _, right_self = (left, left_scaled, left_self) if test is enroll else self._side(test)

        def score(enroll_index: np.ndarray, test_index: np.ndarray) -> np.ndarray:
            cross = paired_dot(left_scaled, right, enroll_index, test_index)
            return self.constant + left_self[enroll_index] + right_self[test_index] + cross

        return score


@BACKENDS.register("plda")
def build_plda(
    plda_model: str | None = None,
    train_plda: str | None = None,
    utt2spk: str | None = None,
    lda_dim: Count | None = None,
    plda_iters: Count = 10,
) -> PldaScorer:
    """Load `plda_model`, or train it first on `train_plda` (an rspecifier) with speakers from `utt2spk`."""
    if plda_model is None:
        raise SpkverifError("--method plda needs --plda-model (a file to read, or to write with --train-plda)")
    if train_plda is None:
        if utt2spk is not None or lda_dim is not None:
            raise SpkverifError("--utt2spk and --lda-dim apply only when training with --train-plda")
        return PldaScorer(PldaModel.load(plda_model))
    if utt2spk is None:
        raise SpkverifError("--train-plda needs --utt2spk to know each training embedding's speaker")
    keys, embeddings = load_vectors(train_plda)
    labels = speaker_labels(keys, utt2spk, "PLDA training")
    model = PldaModel.train(embeddings, labels, lda_dim, plda_iters)
    model.save(plda_model)
    logger.info(
        "PLDA trained on %d embeddings of %d speakers (dimension %d), saved to %s",
        len(keys), int(labels.max()) + 1, model.lda.shape[1], plda_model,
    )  # fmt: skip
    return PldaScorer(model)
