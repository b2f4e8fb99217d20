"""Channel augmentation: what a microphone, a room or a telephone line does to speech.

Each channel is a function `(samples (T,) float32, sample_rate Hz, rng) -> (T,) float32`
registered by name in `CHANNELS`; `augment.channels` names those a training run draws
from and `augment.channel_prob` how often a chunk goes through one (one channel per
chunk, chosen uniformly). It runs after the noise and reverberation of
`training/augment.py` (see `AugmentChain`), on the same per-chunk generator, so a
batch stays a pure function of (seed, epoch, step, part).

- `bandlimit`: a random high-pass (50-400 Hz) and low-pass (2-7 kHz) Butterworth pair,
  as cheap microphones and narrowband recordings cut the spectrum.
- `telephone`: down to 8 kHz, the telephone band (300-3400 Hz, ITU-T G.712), a codec
  (`mulaw`: G.711 8-bit companding; `gsm`: a GSM-06.10-like coder, see `gsm_like`),
  and back up to the training rate.
- `gain`: -20 to +10 dB, clipped at full scale as an overdriven input saturates.
- `room`: convolution with a synthetic room impulse response (`synthetic_rir`), for
  when no RIR corpus is at hand (`--rir` gives real or simulated ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.signal

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry
from spkverif.io.audio import resample
from spkverif.training.augment import reverberate

Channel = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
CHANNELS: Registry[Channel] = Registry("channel")
TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def band_pass(samples: np.ndarray, sample_rate: int, low: float, high: float, order: int = 4) -> np.ndarray:
    """Butterworth high-pass at `low` and low-pass at `high` Hz (either skipped when out of range)."""
    nyquist = sample_rate / 2
    out = samples.astype(np.float64)
    if low > 0:
        out = scipy.signal.sosfilt(scipy.signal.butter(order, low / nyquist, "highpass", output="sos"), out)
    if high < nyquist * 0.98:
        out = scipy.signal.sosfilt(scipy.signal.butter(order, high / nyquist, "lowpass", output="sos"), out)
    return out.astype(np.float32)


def mu_law(samples: np.ndarray, mu: int = 255) -> np.ndarray:
    """G.711 mu-law: compand, quantise to 8 bits, expand (values clipped to [-1, 1])."""
    x = np.clip(samples, -1.0, 1.0)
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    codes = np.round((companded + 1) / 2 * mu)
    y = codes / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


_GSM_FRAME, _GSM_ORDER, _GSM_SUBBLOCK, _GSM_PULSES = 160, 8, 40, 13
_GSM_GRIDS = np.arange(4)[:, None] + 3 * np.arange(_GSM_PULSES)[None, :]  # (4 grid positions, 13 pulses)


def gsm_like(samples: np.ndarray) -> np.ndarray:
    """A GSM 06.10-like coder at 8 kHz: what the full-rate codec throws away, without its bit stream.

    Per 20 ms frame, order-8 LPC (autocorrelation method); the residual of each 5 ms
    sub-block keeps only the best of GSM's four decimation-by-3 grids (13 pulses, as
    regular-pulse excitation does), each quantised to 3 bits against the block's
    maximum; the LPC synthesis filter rebuilds the frame. GSM's long-term (pitch)
    predictor is left out. (T,) float32 at 8 kHz in and out.
    """
    length = len(samples)
    frames = -(-length // _GSM_FRAME)
    x = np.pad(samples.astype(np.float64), (0, frames * _GSM_FRAME - length))
    window = np.hanning(_GSM_FRAME)
    out = np.zeros_like(x)
    analysis_state = np.zeros(_GSM_ORDER)
    synthesis_state = np.zeros(_GSM_ORDER)
    for index in range(frames):
        frame = x[index * _GSM_FRAME : (index + 1) * _GSM_FRAME]
        windowed = frame * window
        r = np.correlate(windowed, windowed, "full")[_GSM_FRAME - 1 : _GSM_FRAME + _GSM_ORDER]
        if r[0] <= 1e-10:
            a = np.concatenate([[1.0], np.zeros(_GSM_ORDER)])
        else:
            r[0] *= 1.0001  # white-noise correction keeps the solve well conditioned
            a = np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[:_GSM_ORDER], -r[1:])])
        residual, analysis_state = scipy.signal.lfilter(a, [1.0], frame, zi=analysis_state)
        blocks = residual.reshape(-1, _GSM_SUBBLOCK)
        candidates = blocks[:, _GSM_GRIDS]  # (4 sub-blocks, 4 grids, 13)
        grid = np.argmax(np.sum(candidates**2, axis=2), axis=1)
        pulses = candidates[np.arange(len(blocks)), grid]  # (4, 13)
        peak = np.max(np.abs(pulses), axis=1, keepdims=True) + 1e-12
        levels = np.clip(np.round(pulses / peak * 3.5 - 0.5), -4, 3)  # 3 bits: -4..3
        excitation = np.zeros_like(blocks)
        # Three times the energy on a third of the samples: the decoded level matches the input.
        np.put_along_axis(excitation, _GSM_GRIDS[grid], np.sqrt(3) * (levels + 0.5) / 3.5 * peak, axis=1)
        frame_out, synthesis_state = scipy.signal.lfilter([1.0], a, excitation.reshape(-1), zi=synthesis_state)
        out[index * _GSM_FRAME : (index + 1) * _GSM_FRAME] = frame_out
    return np.clip(out[:length], -1.0, 1.0).astype(np.float32)


CODECS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mulaw": mu_law, "gsm": gsm_like}


def telephone_channel(samples: np.ndarray, sample_rate: int, codec: str = "mulaw") -> np.ndarray:
    """Down to 8 kHz, the 300-3400 Hz band, `codec` (mulaw or gsm), back to `sample_rate`; (T,) -> (T,)."""
    if codec not in CODECS:
        raise SpkverifError(f"unknown codec {codec!r}; choose one of: {', '.join(CODECS)}")
    narrow = resample(samples, sample_rate, TELEPHONE_RATE)
    narrow = band_pass(narrow, TELEPHONE_RATE, *TELEPHONE_BAND)
    coded = CODECS[codec](narrow)
    return _fit(resample(coded, TELEPHONE_RATE, sample_rate), len(samples))


def synthetic_rir(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A room impulse response: a direct path then an exponentially decaying noise tail.

    RT60 uniform in 0.2-0.9 s (the tail falls 60 dB in that time), direct-to-reverberant
    ratio uniform in 0-12 dB, the tail starting 2-10 ms after the direct path (the
    first reflections). The statistical model of Polack (1988), as used by simulated
    RIR sets where no measured ones are available. Returns (L,) float32, L <= 0.9 s.
    """
    rt60 = rng.uniform(0.2, 0.9)
    length = int(rt60 * sample_rate)
    time = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.908 * time / rt60)
    tail[: int(rng.uniform(0.002, 0.010) * sample_rate)] = 0.0
    tail /= np.sqrt(np.sum(tail**2)) + 1e-12
    rir = tail
    rir[0] = np.sqrt(10 ** (rng.uniform(0.0, 12.0) / 10))
    return rir.astype(np.float32)


@CHANNELS.register("bandlimit")
def bandlimit(samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """High-pass at 50-400 Hz and low-pass at 2-7 kHz (Butterworth), drawn per chunk."""
    return band_pass(samples, sample_rate, rng.uniform(50.0, 400.0), rng.uniform(2000.0, 7000.0))


@CHANNELS.register("telephone")
def telephone(samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """8 kHz, 300-3400 Hz, G.711 mu-law or a GSM-like coder, back to the training rate."""
    return telephone_channel(samples, sample_rate, ("mulaw", "gsm")[int(rng.integers(2))])


@CHANNELS.register("gain")
def gain(samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """-20 to +10 dB, clipped at full scale."""
    return np.clip(samples * 10 ** (rng.uniform(-20.0, 10.0) / 20), -1.0, 1.0).astype(np.float32)


@CHANNELS.register("room")
def room(samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response (RT60 0.2-0.9 s, DRR 0-12 dB)."""
    return reverberate(samples, synthetic_rir(rng, sample_rate))


class ChunkTransform(Protocol):
    """What the training dataset calls on each chunk (training/augment.py's ChunkAugmenter is one)."""

    @property
    def active(self) -> bool: ...

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class ChannelAugmenter:
    """With probability `prob`, one of the named channels, drawn uniformly, per chunk.

    Raises SpkverifError for an unknown channel name or a probability outside [0, 1].
    """

    def __init__(self, names: Sequence[str], prob: float, sample_rate: int):
        if not 0.0 <= prob <= 1.0:
            raise SpkverifError(f"augment.channel_prob must be in [0, 1], not {prob}")
        self.channels = [CHANNELS.get(name) for name in names]
        self.prob = prob if self.channels else 0.0
        self.sample_rate = sample_rate

    @property
    def active(self) -> bool:
        return self.prob > 0

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.active and rng.random() < self.prob:
            channel = self.channels[int(rng.integers(len(self.channels)))]
            samples = channel(samples, self.sample_rate, rng)
        return samples


class AugmentChain:
    """Several chunk transforms in order (noise and reverberation, then a channel)."""

    def __init__(self, transforms: Sequence[ChunkTransform]):
        self.transforms = [transform for transform in transforms if transform.active]

    @property
    def active(self) -> bool:
        return bool(self.transforms)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            samples = transform(samples, rng)
        return samples
