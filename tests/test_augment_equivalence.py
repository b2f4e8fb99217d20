"""The cheap augmentation computes what the plain one did, to float tolerance: references
written the straightforward way (float64 direct convolution, torchaudio's functional
resampler, whole-file noise reads) against the cached, float32, seek-reading code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional

from spkverif.io.datadir import DataDir
from spkverif.training.augment import (
    ChunkAugmenter,
    LazyAudioPool,
    NoiseKind,
    mix_at_snr,
    random_excerpt,
    reverberate,
    signal_power,
    speed_perturb,
)

RATE = 16000


def _reference_reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    rir = rir.astype(np.float64) / np.sqrt(np.sum(rir.astype(np.float64) ** 2))
    delay = int(np.argmax(np.abs(rir)))
    return np.convolve(samples.astype(np.float64), rir)[delay : delay + len(samples)]


def _pool(tmp_path: Path, name: str, lengths: list[int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    paths = {}
    for index, length in enumerate(lengths):
        path = tmp_path / name / f"{name}{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, (0.1 * rng.standard_normal(length)).astype(np.float32), RATE)
        paths[path.stem] = str(path)
    DataDir(paths, {key: key for key in paths}).save(tmp_path / name / "data")
    return tmp_path / name / "data"


def test_fft_reverberation_matches_direct_convolution() -> None:
    rng = np.random.default_rng(0)
    samples = rng.standard_normal(2 * RATE).astype(np.float32)
    for length in (1, 300, 7000, 16000):
        rir = (rng.standard_normal(length) * np.exp(-np.arange(length) / 2000)).astype(np.float32)
        expected = _reference_reverberate(samples, rir)
        actual = reverberate(samples, rir)
        assert actual.dtype == np.float32 and actual.shape == samples.shape
        np.testing.assert_allclose(actual, expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_cached_resampler_matches_torchaudio_functional(speed: float) -> None:
    samples = np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    expected = torchaudio.functional.resample(torch.from_numpy(samples), round(RATE * speed), RATE).numpy()
    for _ in range(2):  # the second call uses the cached kernel
        np.testing.assert_allclose(speed_perturb(samples, speed, RATE), expected, rtol=0, atol=1e-5)


def test_mixing_matches_the_float64_formula() -> None:
    rng = np.random.default_rng(2)
    signal, noise = rng.standard_normal((2, RATE)).astype(np.float32)
    gain = np.sqrt(np.mean(signal.astype(np.float64) ** 2) / (np.mean(noise.astype(np.float64) ** 2) * 10**0.5))
    np.testing.assert_allclose(mix_at_snr(signal, noise, 5.0), signal + gain * noise, rtol=0, atol=1e-6)
    assert signal_power(signal) == pytest.approx(np.mean(signal.astype(np.float64) ** 2), rel=1e-12)


def test_seeking_excerpts_are_the_whole_file_excerpts(tmp_path: Path) -> None:
    """The same generator draws give the same samples whether the file is read whole or in part."""
    path = _pool(tmp_path, "music", [5 * RATE, RATE // 2, 3 * RATE], seed=3)
    seeking, whole = LazyAudioPool(path, RATE), LazyAudioPool(path, RATE)
    for seed in range(20):
        first, second = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = random_excerpt(whole.random(second), RATE, second)
        np.testing.assert_array_equal(seeking.excerpt(first, RATE), expected)
        assert first.random() == second.random()  # both generators made the same draws


def test_augmenter_output_matches_the_plain_computation(tmp_path: Path) -> None:
    """Reverberation then babble, drawn as ChunkAugmenter draws them, computed the plain way."""
    rirs = LazyAudioPool(_pool(tmp_path, "rir", [4000, 9000], seed=4), RATE)
    babble = NoiseKind(
        "babble", LazyAudioPool(_pool(tmp_path, "speech", [3 * RATE] * 4, seed=5), RATE), (5, 10), (3, 3)
    )
    augmenter = ChunkAugmenter([babble], rirs, noise_prob=1.0, rir_prob=1.0)
    samples = np.random.default_rng(6).standard_normal(2 * RATE).astype(np.float32)
    for seed in range(5):
        actual = augmenter(samples, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        rng.random()
        reverberated = _reference_reverberate(samples, rirs.get(int(rng.integers(2))))
        rng.random()
        rng.integers(1)  # the noise kind
        number = int(rng.integers(3, 4))
        noise = np.zeros(len(samples))
        for _ in range(number):
            excerpt = random_excerpt(babble.pool.random(rng), len(samples), rng).astype(np.float64)
            noise += excerpt / np.sqrt(np.mean(excerpt**2))
        snr = rng.uniform(5, 10)
        gain = np.sqrt(np.mean(reverberated**2) / (np.mean(noise**2) * 10 ** (snr / 10)))
        expected = reverberated + gain * noise
        np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max())
