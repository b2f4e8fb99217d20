"""PLDA against the model it assumes: data drawn from a known two-covariance model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from spkverif.backends.base import score_pairs
from spkverif.backends.plda import PldaModel, PldaScorer, train_lda, train_two_covariance
from spkverif.base.errors import SpkverifError


def _random_covariance(rng: np.random.Generator, dim: int, scale: float) -> np.ndarray:
    basis = rng.normal(size=(dim, dim))
    return scale * (basis @ basis.T / dim + 0.3 * np.eye(dim))


def _draw(rng: np.random.Generator, mu, between, within, speakers: int, per_speaker: int):
    centres = rng.multivariate_normal(mu, between, size=speakers)
    labels = np.repeat(np.arange(speakers), per_speaker)
    noise = rng.multivariate_normal(np.zeros(len(mu)), within, size=len(labels))
    return centres[labels] + noise, labels


def test_em_recovers_the_true_covariances() -> None:
    rng = np.random.default_rng(0)
    dim = 5
    mu = rng.normal(size=dim)
    between, within = _random_covariance(rng, dim, 2.0), _random_covariance(rng, dim, 1.0)
    # Speakers with unequal numbers of utterances exercise the grouping by count in the E-step.
    parts = [_draw(rng, mu, between, within, 1500, count) for count in (2, 5, 9)]
    vectors = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] + 1500 * i for i, p in enumerate(parts)])
    learned_mu, learned_between, learned_within = train_two_covariance(vectors, labels, iterations=30)
    assert np.abs(learned_mu - mu).max() < 0.1
    assert np.abs(learned_within - within).max() / np.abs(within).max() < 0.03
    assert np.abs(learned_between - between).max() / np.abs(between).max() < 0.08


def _closed_form_llr(a: np.ndarray, b: np.ndarray, mu, between, within) -> float:
    """log N([a; b]; same speaker) - log N([a; b]; different speakers), from the joint Gaussians."""
    total = between + within
    same = np.block([[total, between], [between, total]])
    different = np.block([[total, np.zeros_like(total)], [np.zeros_like(total), total]])
    pair, centre = np.concatenate([a, b]), np.concatenate([mu, mu])
    return multivariate_normal(centre, same).logpdf(pair) - multivariate_normal(centre, different).logpdf(pair)


def test_llrs_match_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    dim = 4
    mu = rng.normal(size=dim)
    between, within = _random_covariance(rng, dim, 1.5), _random_covariance(rng, dim, 0.7)
    model = PldaModel(np.zeros(dim), np.eye(dim), mu, between, within)
    embeddings = rng.normal(size=(12, dim)) * 3
    enroll_index, test_index = rng.integers(0, 12, 40), rng.integers(0, 12, 40)
    scores = score_pairs(PldaScorer(model), embeddings, embeddings, enroll_index, test_index)
    transformed = model.transform(embeddings)
    expected = [
        _closed_form_llr(transformed[e], transformed[t], mu, between, within)
        for e, t in zip(enroll_index, test_index, strict=True)
    ]
    assert scores == pytest.approx(expected, abs=1e-9)


def test_lda_keeps_the_discriminant_directions() -> None:
    rng = np.random.default_rng(2)
    # Speakers differ along the first two axes only; the rest is noise of the same size.
    centres = np.zeros((200, 6))
    centres[:, :2] = rng.normal(size=(200, 2)) * 3
    labels = np.repeat(np.arange(200), 6)
    vectors = centres[labels] + rng.normal(size=(len(labels), 6))
    projection = train_lda(vectors, labels, 2)
    spanned = np.linalg.svd(projection, full_matrices=False)[0]
    assert np.linalg.norm(spanned[2:, :], axis=0).max() < 0.1


def test_trained_model_saves_and_reloads(tmp_path) -> None:
    rng = np.random.default_rng(3)
    vectors, labels = _draw(rng, np.zeros(6), np.eye(6) * 2, np.eye(6), 60, 4)
    model = PldaModel.train(vectors.astype(np.float32), labels, lda_dim=4, iterations=5)
    model.save(tmp_path / "plda.npz")
    again = PldaModel.load(tmp_path / "plda.npz")
    index = np.arange(len(vectors))
    first = score_pairs(PldaScorer(model), vectors, vectors, index, index[::-1])
    second = score_pairs(PldaScorer(again), vectors, vectors, index, index[::-1])
    assert np.array_equal(first, second)
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(SpkverifError, match="PLDA model"):
        PldaModel.load(tmp_path / "bad.npz")
    with pytest.raises(SpkverifError, match="--lda-dim 60"):
        PldaModel.train(vectors, labels, lda_dim=60, iterations=1)
