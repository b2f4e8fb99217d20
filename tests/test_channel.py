"""Channel augmentation (spkverif/training/channel.py): each channel does what it says to the spectrum."""

from __future__ import annotations

import numpy as np
import pytest

from spkverif.base.errors import SpkverifError
from spkverif.training.channel import (
    CHANNELS,
    AugmentChain,
    ChannelAugmenter,
    gsm_like,
    mu_law,
    synthetic_rir,
    telephone_channel,
)

RATE = 16000


def _tones(frequencies: list[float], seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    time = np.arange(int(seconds * rate)) / rate
    return (0.2 * sum(np.sin(2 * np.pi * f * time) for f in frequencies)).astype(np.float32)


def _level_db(samples: np.ndarray, frequency: float, rate: int = RATE) -> float:
    """Power (dB) of the spectrum within 50 Hz of `frequency`, the first and last 0.1 s left out."""
    middle = samples[rate // 10 : -rate // 10]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
    bins = np.fft.rfftfreq(len(middle), 1 / rate)
    return float(10 * np.log10(spectrum[np.abs(bins - frequency) < 50].sum() + 1e-20))


@pytest.mark.parametrize("codec", ["mulaw", "gsm"])
def test_telephone_keeps_the_telephone_band_and_removes_the_rest(codec: str) -> None:
    clean = _tones([100.0, 1000.0, 6000.0])
    line = telephone_channel(clean, RATE, codec)
    assert line.shape == clean.shape and line.dtype == np.float32
    assert abs(_level_db(line, 1000.0) - _level_db(clean, 1000.0)) < 6.0  # in band: kept
    assert _level_db(line, 6000.0) < _level_db(clean, 6000.0) - 50.0  # above 4 kHz: gone
    assert _level_db(line, 100.0) < _level_db(clean, 100.0) - 15.0  # below 300 Hz: cut


def test_mu_law_is_g711_accurate_and_gsm_like_is_coarser() -> None:
    speechlike = _tones([300.0, 700.0, 1100.0], rate=8000)

    def snr(coded: np.ndarray) -> float:
        return 10 * np.log10(np.sum(speechlike**2) / np.sum((coded - speechlike) ** 2))

    assert 30.0 < snr(mu_law(speechlike)) < 45.0  # 8-bit G.711: about 38 dB on loud signals
    coded = gsm_like(speechlike)
    assert coded.shape == speechlike.shape
    # Regular-pulse excitation keeps a third of the residual: the waveform is not kept, the spectrum is.
    assert snr(coded) < 15.0
    for frequency in (300.0, 700.0, 1100.0):
        assert abs(_level_db(coded, frequency, 8000) - _level_db(speechlike, frequency, 8000)) < 10.0


def test_synthetic_rir_decays_from_its_direct_path() -> None:
    rir = synthetic_rir(np.random.default_rng(0), RATE)
    assert int(np.argmax(np.abs(rir))) == 0
    tenth = len(rir) // 10
    assert np.sum(rir[tenth : 2 * tenth] ** 2) > 10 * np.sum(rir[-tenth:] ** 2)


@pytest.mark.parametrize("name", CHANNELS.names())
def test_each_channel_keeps_length_and_is_a_function_of_the_generator(name: str) -> None:
    clean = _tones([200.0, 900.0, 2500.0, 5000.0])
    first = CHANNELS.get(name)(clean, RATE, np.random.default_rng(7))
    again = CHANNELS.get(name)(clean, RATE, np.random.default_rng(7))
    assert first.shape == clean.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, clean, atol=1e-3)
    assert np.max(np.abs(first)) <= 1.0


def test_channel_augmenter_applies_at_its_probability_and_refuses_unknown_names() -> None:
    clean = _tones([1000.0], seconds=0.2)
    augmenter = ChannelAugmenter(["gain"], 0.25, RATE)
    changed = [not np.array_equal(augmenter(clean, np.random.default_rng(seed)), clean) for seed in range(400)]
    assert 0.18 < np.mean(changed) < 0.32
    assert not ChannelAugmenter(["gain"], 0.0, RATE).active
    assert not AugmentChain([ChannelAugmenter(["gain"], 0.0, RATE)]).active
    with pytest.raises(SpkverifError, match="unknown channel 'fax'; choose one of: bandlimit, gain, room, telephone"):
        ChannelAugmenter(["fax"], 0.5, RATE)
    with pytest.raises(SpkverifError, match="channel_prob must be in"):
        ChannelAugmenter(["gain"], 1.5, RATE)
