"""Augmentation: SNRs as asked, a delta RIR changes nothing, speed changes duration by its factor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spkverif.base.errors import SpkverifError
from spkverif.training.augment import (
    ChunkAugmenter,
    LazyAudioPool,
    mix_at_snr,
    noise_kinds,
    reverberate,
    speed_perturb,
)
from spkverif.training.sampler import SpeakerChunkSampler, SpeakerIndex
from tests.conftest import write_data_dir, write_wav


def _snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    noise = mixed.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 17.5, 20.0])
def test_mixture_has_the_requested_snr(snr: float) -> None:
    rng = np.random.default_rng(0)
    speech = (np.sin(np.arange(32000) / 7.0) * 0.3).astype(np.float32)
    noise = rng.standard_normal(32000).astype(np.float32) * 5
    assert abs(_snr(speech, mix_at_snr(speech, noise, snr)) - snr) < 0.5


def test_delta_rir_leaves_the_signal_unchanged() -> None:
    speech = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    for delay in (0, 37):
        rir = np.zeros(4000, dtype=np.float32)
        rir[delay] = 0.25
        np.testing.assert_allclose(reverberate(speech, rir), speech, atol=1e-5)


def test_reverberation_smears_but_keeps_length_and_timing() -> None:
    speech = np.zeros(16000, dtype=np.float32)
    speech[8000] = 1.0
    decay = np.exp(-np.arange(3200) / 400.0).astype(np.float32)
    rir = np.concatenate([np.zeros(100, dtype=np.float32), decay])
    wet = reverberate(speech, rir)
    assert len(wet) == len(speech) and int(np.argmax(wet)) == 8000
    assert np.count_nonzero(np.abs(wet) > 1e-3) > 100


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_perturbation_changes_duration_by_the_factor(speed: float) -> None:
    samples = np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    assert abs(len(speed_perturb(samples, speed, 16000)) - 16000 / speed) <= 1


def _noise_dir(root: Path, name: str, count: int, seed: int) -> Path:
    files = {f"{name}-{i:03d}": str(write_wav(root / f"{name}{i}.wav", 0.5, seed=seed + i)) for i in range(count)}
    return write_data_dir(root / name, files, {key: key for key in files})


def test_musan_directory_gives_three_kinds_with_their_ranges(tmp_path: Path) -> None:
    for name, seed in (("musan_noise", 0), ("musan_music", 10), ("musan_speech", 20)):
        _noise_dir(tmp_path / "musan", name, 8, seed)
    kinds = noise_kinds(tmp_path / "musan", 16000, [0, 15], [5, 15], [13, 20], [3, 7], cache_size=4)
    assert [(k.name, k.snr, k.count) for k in kinds] == [
        ("noise", (0.0, 15.0), (1, 1)),
        ("music", (5.0, 15.0), (1, 1)),
        ("babble", (13.0, 20.0), (3, 7)),
    ]
    babble, snr = kinds[2].sample(8000, np.random.default_rng(0))
    assert len(babble) == 8000 and 13 <= snr <= 20
    # lazily: the noise pool was not touched; babble excerpts were read by seeking (lengths from headers)
    assert len(kinds[0].pool._cache) == 0 and kinds[2].pool._lengths and len(kinds[2].pool._cache) <= 4


def test_plain_directory_is_one_kind_and_bad_paths_fail(tmp_path: Path) -> None:
    _noise_dir(tmp_path, "noises", 3, 0)
    kinds = noise_kinds(tmp_path / "noises", 16000, [10, 20], [5, 15], [13, 20], [3, 7], cache_size=8)
    assert len(kinds) == 1 and kinds[0].snr == (10.0, 20.0)
    with pytest.raises(SpkverifError, match="no such noise directory"):
        noise_kinds(tmp_path / "none", 16000, [10, 20], [5, 15], [13, 20], [3, 7], cache_size=8)
    with pytest.raises(SpkverifError, match=r"noise_snr must be a \[low, high\] pair"):
        noise_kinds(tmp_path / "noises", 16000, [20, 10], [5, 15], [13, 20], [3, 7], cache_size=8)


def test_augmenter_is_a_pure_function_of_its_generator(tmp_path: Path) -> None:
    pool = LazyAudioPool(_noise_dir(tmp_path, "noises", 3, 0), 16000)
    kinds = noise_kinds(tmp_path / "noises", 16000, [10, 20], [5, 15], [13, 20], [3, 7], cache_size=8)
    augmenter = ChunkAugmenter(kinds, pool, noise_prob=1.0, rir_prob=1.0)
    speech = np.random.default_rng(3).standard_normal(8000).astype(np.float32)
    first = augmenter(speech, np.random.default_rng(5))
    np.testing.assert_array_equal(first, augmenter(speech, np.random.default_rng(5)))
    assert not np.array_equal(first, augmenter(speech, np.random.default_rng(6)))


def test_speed_perturbed_classes() -> None:
    utt2spk = {f"s{s}-{u}": f"s{s}" for s in range(5) for u in range(3)}
    index = SpeakerIndex.build(utt2spk, dict.fromkeys(utt2spk, 20000))
    sampler = SpeakerChunkSampler(index, 4, 2, 8000, seed=0, speeds=(1.0, 0.9, 1.1))
    assert sampler.num_classes == 15
    seen = set()
    for step in range(20):
        requests = sampler.batch(0, step)
        for first, second in zip(requests[::2], requests[1::2], strict=True):
            assert first.label == second.label and first.speed == second.speed
            assert first.label % 5 == index.labels[first.utterance]
            assert first.source_samples == round(8000 * first.speed)
            assert first.offset + first.source_samples <= 20000
            seen.add(first.speed)
    assert seen == {1.0, 0.9, 1.1}
