"""PLDA scoring: global mean, optional LDA, length normalisation, then a two-covariance PLDA.

The two-covariance model (Brümmer & de Villiers 2010; Sizov et al. 2014): a
speaker is a point y ~ N(mu, B) and each of its embeddings x = y + e with
e ~ N(0, W). B and W are learned by EM on a data directory's embeddings; a
trial is scored by the log-likelihood ratio of "same speaker" against
"different speakers", in closed form after diagonalising B and W together.

The model file (`--plda-model`) holds the whole chain (mean, LDA, B, W, mu),
so scoring needs nothing else.

The smallest training data that give each estimate a meaning (`PldaModel.train`
refuses less with `SpkverifError`, saying what is needed):

- the between-speaker covariance B (and LDA's between-speaker scatter): speaker
  means, at least `MIN_PLDA_SPEAKERS` = 2 of them. Fewer speakers than dimensions
  make B low-rank, which is meaningful (PLDA with a speaker subspace; a ridge keeps
  it invertible), so that is not refused;
- the within-speaker scatter W, inverted by LDA and by PLDA: full rank in the input
  dimension D, so at least D + S embeddings of S speakers (its rank is at most N - S:
  each speaker's mean takes one), spanning every dimension. Speakers with one
  embedding add nothing to it and are allowed; one speaker with enough embeddings
  suffices, as W is assumed shared by all speakers;
- LDA to d dimensions: the between-speaker scatter has rank at most S - 1, so
  d <= S - 1 (at least d + 1 speakers) and d no more than the rank the speaker means
  actually span (else the last directions are arbitrary); and d >= `MIN_LDA_DIM` = 2,
  since length normalisation follows: in one dimension it maps every embedding to
  +1 or -1 and PLDA scores take two values.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse

from spkverif.backends.base import BACKENDS, PairScorer, check_dimension, length_normalise, paired_dot, speaker_labels
from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count
from spkverif.io.atomic import atomic_write
from spkverif.io.specifiers import load_vectors

logger = logging.getLogger(__name__)

FORMAT = "spkverif-plda-1"

EM_ITERATIONS = 10
"""EM iterations of the two-covariance model unless told (`score --plda-iters`)."""
MIN_PLDA_SPEAKERS = 2
"""Speaker means needed for a between-speaker covariance."""
MIN_LDA_DIM = 2
"""The smallest LDA dimension: length normalisation follows, and in one dimension it leaves only +1 and -1."""


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
    """Columns (D, dim): the `dim` directions maximising between- over within-class variance, within-whitened.

    `vectors` (N, D), `labels` (N,) in 0..S-1. Raises `SpkverifError` when the speaker
    means span fewer than `dim` dimensions (the between-class scatter's rank, at most
    S - 1): the directions past that rank would separate no speakers. The rank counts
    singular values above NumPy's default tolerance at float32 precision, the
    precision embeddings carry: a spread below it is the rounding of collinear means.
    """
    sums, counts = _class_sums(vectors, labels)
    means = sums / counts[:, None]
    centred = vectors - means[labels]
    within = centred.T @ centred / len(vectors)
    grand = vectors.mean(axis=0)
    between = ((means - grand).T * counts) @ (means - grand) / len(vectors)
    spread = (means - grand) * np.sqrt(counts)[:, None]
    singular = np.linalg.svd(spread, compute_uv=False)
    rank = int(np.sum(singular > singular.max(initial=0.0) * max(spread.shape) * np.finfo(np.float32).eps))
    if rank < dim:
        remedy = f"use --lda-dim {MIN_LDA_DIM} to {rank}" if rank >= MIN_LDA_DIM else "train without --lda-dim"
        raise SpkverifError(
            f"--lda-dim {dim} needs speaker means that span {dim} dimensions; the {len(counts)} speakers' means "
            f"span {rank} (the rank of the between-speaker scatter), and LDA past it keeps directions that separate "
            f"no speakers: {remedy}"
        )
    _, vectors_ = scipy.linalg.eigh(_symmetric(between), _floored(within))
    return vectors_[:, ::-1][:, :dim]


def train_two_covariance(
    vectors: np.ndarray, labels: np.ndarray, iterations: int = EM_ITERATIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for (mu, between B, within W) of the two-covariance model; returns (mu, B, W)."""
    sums, counts = _class_sums(vectors, labels)
    speakers, total = len(counts), len(vectors)
    means = sums / counts[:, None]
    centred = vectors - means[labels]
    within = _floored(centred.T @ centred / total)
    mu = means.mean(axis=0)
    between = _floored(np.atleast_2d(np.cov(means, rowvar=False, bias=True)))
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


def _require_full_within_rank(centred: np.ndarray, labels: np.ndarray, speakers: int) -> None:
    """The within-class scatter must be invertible in the input dimension (LDA and PLDA both invert it):
    its rank is at most N - S, and less when embeddings repeat or lie in a subspace. LDA does not lift
    this: it inverts the same scatter in the input dimension before it reduces anything."""
    count, dim = centred.shape
    sums, counts = _class_sums(centred, labels)
    within = centred - (sums / counts[:, None])[labels]
    rank = np.linalg.matrix_rank(within)
    if rank < dim:
        needed = dim + speakers
        raise SpkverifError(
            f"the within-class scatter of the PLDA training embeddings is singular: rank {rank} in dimension {dim} "
            f"({count} embeddings of {speakers} speakers); PLDA in {dim} dimensions needs at least {needed} "
            "embeddings (dimension + speakers) spanning every dimension"
        )


def _require_lda_dim(lda_dim: int, dim: int, speakers: int) -> None:
    """`lda_dim` from `MIN_LDA_DIM` to min(D, S - 1), or `SpkverifError` saying why."""
    if lda_dim < MIN_LDA_DIM:
        raise SpkverifError(
            f"--lda-dim {lda_dim} is too small: length normalisation follows LDA, and in {lda_dim} dimension it "
            f"maps every embedding to +1 or -1, so PLDA scores would take two values; use --lda-dim {MIN_LDA_DIM} "
            f"or more, or no --lda-dim"
        )
    if lda_dim > min(dim, speakers - 1):
        if lda_dim > dim:
            reason = "LDA reduces the dimension, it cannot add to it"
        else:
            reason = "LDA to d dimensions needs at least d + 1 speakers (the between-speaker scatter has rank at most "
            reason += "speakers - 1)"
        if speakers - 1 < MIN_LDA_DIM:
            reason += f"; {speakers} speakers allow no LDA: train without --lda-dim"
        raise SpkverifError(
            f"--lda-dim {lda_dim} must be between {MIN_LDA_DIM} and min(dimension {dim}, speakers - 1 = "
            f"{speakers - 1}): {reason}"
        )


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
        """Read a model file; `SpkverifError` for a missing, truncated, foreign or inconsistent one."""
        if not Path(path).is_file():
            raise SpkverifError("no such PLDA model (train one with --train-plda)", path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data or str(data["format"]) != FORMAT:
                    raise SpkverifError(f"not a {FORMAT} model file", path)
                model = cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except SpkverifError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise SpkverifError(f"cannot read the PLDA model (truncated?): {error}", path) from None
        model.check(path)
        return model

    def check(self, path: str | Path) -> None:
        """Shapes that fit together and finite numbers, or `SpkverifError`."""
        dim, reduced = len(self.mean), self.lda.shape[-1]
        shapes = {
            "mean": (self.mean.shape, (dim,)),
            "lda": (self.lda.shape, (dim, reduced)),
            "plda_mean": (self.plda_mean.shape, (reduced,)),
            "between": (self.between.shape, (reduced, reduced)),
            "within": (self.within.shape, (reduced, reduced)),
        }
        for name, (found, expected) in shapes.items():
            if found != expected:
                raise SpkverifError(f"PLDA model: {name} has shape {found}, expected {expected}", path)
            if not np.isfinite(getattr(self, name)).all():
                raise SpkverifError(f"PLDA model: {name} holds NaN or inf", path)

    @classmethod
    def train(cls, embeddings: np.ndarray, labels: np.ndarray, lda_dim: int | None, iterations: int) -> PldaModel:
        """Train the chain on (N, D) embeddings with speaker labels (N,) in 0..S-1.

        Raises `SpkverifError` when the data cannot support the model (the limits in the
        module's docstring): fewer than `MIN_PLDA_SPEAKERS` speakers, no more embeddings
        than speakers, a within-class scatter that is singular in the input dimension
        (it needs at least D + S embeddings spanning D dimensions), or `lda_dim` outside
        `MIN_LDA_DIM`..min(D, S - 1) or above the rank the speaker means span.
        """
        speakers, dim = int(labels.max()) + 1, embeddings.shape[1]
        if speakers < MIN_PLDA_SPEAKERS or len(embeddings) <= speakers:
            raise SpkverifError(
                f"PLDA needs embeddings of at least {MIN_PLDA_SPEAKERS} speakers (a between-speaker covariance) and "
                f"more embeddings than speakers (a within-speaker one); got {speakers} speaker(s) and "
                f"{len(embeddings)} embeddings"
            )
        if lda_dim is not None:
            _require_lda_dim(lda_dim, dim, speakers)
        mean = embeddings.astype(np.float64).mean(axis=0)
        centred = embeddings - mean
        _require_full_within_rank(centred, labels, speakers)
        lda = np.eye(dim)
        if lda_dim is not None:
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
    plda_iters: Count = EM_ITERATIONS,
) -> PldaScorer:
    """Load --plda-model, or train it first on --train-plda (an rspecifier) with speakers from --utt2spk."""
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
