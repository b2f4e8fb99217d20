"""On-the-fly augmentation of training chunks: additive noise, reverberation, speed.

Noise and room impulse responses come from ordinary Kaldi data directories
(`spkverif prepare musan`, `prepare rirs`, or any directory), read lazily and kept
in a bounded cache. A MUSAN directory holding `musan_noise`, `musan_music` and
`musan_speech` is used the Kaldi/WeSpeaker way: noise, music, and babble made of
several speech utterances, each with its own SNR range.

Every random choice is drawn from a generator the caller seeds per chunk, so an
augmented batch is a pure function of (seed, epoch, step, part), like the batch itself.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.io.audio import AudioReader, is_pipe
from spkverif.io.datadir import load_data_dir

SPEEDS = (1.0, 0.9, 1.1)


class LazyAudioPool:
    """Utterances of a data directory, loaded on first use and kept in an LRU cache;
    `excerpt` reads only the stretch it needs from a file (MUSAN music runs for minutes)."""

    def __init__(self, path: str | Path, sample_rate: int, cache_size: int = 256):
        self.path = Path(path)
        data = load_data_dir(self.path)
        self.keys = data.utterances
        self.reader = AudioReader.from_data_dir(data, sample_rate, allow_resample=True)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lengths: dict[str, int | None] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, index: int) -> np.ndarray:
        key = self.keys[index]
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        samples = self.reader.read(key)
        self._cache[key] = samples
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return samples

    def random(self, rng: np.random.Generator) -> np.ndarray:
        return self.get(int(rng.integers(len(self.keys))))

    def _file_length(self, key: str) -> int | None:
        """Samples of a plain mono-or-more file at the pool's rate, from its header; None for anything else."""
        if key not in self._lengths:
            spec = self.reader.wav_scp.get(key) if self.reader.segments is None else None
            length = None
            if spec is not None and not is_pipe(spec) and os.path.isfile(spec):
                try:
                    info = soundfile.info(spec)
                except (soundfile.LibsndfileError, RuntimeError):
                    info = None  # the whole-file read will say what is wrong
                if info is not None and info.samplerate == self.reader.sample_rate:
                    length = info.frames
            self._lengths[key] = length
        return self._lengths[key]

    def excerpt(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """`random_excerpt(self.random(rng), length, rng)`, the same draws and samples, but a
        long file that is not cached has only the excerpt read (a seek), not the whole file."""
        index = int(rng.integers(len(self.keys)))
        key = self.keys[index]
        total = None if key in self._cache else self._file_length(key)
        if total is None or total < length:
            return random_excerpt(self.get(index), length, rng)
        start = int(rng.integers(0, total - length + 1))
        samples, _ = soundfile.read(
            self.reader.wav_scp[key], start=start, stop=start + length, dtype="float32", always_2d=True
        )
        return np.ascontiguousarray(samples[:, 0])


def signal_power(samples: np.ndarray) -> float:
    """Mean square of (T,) samples, accumulated in float64."""
    wide = samples.astype(np.float64)
    return float(np.dot(wide, wide)) / max(len(samples), 1)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that 10 log10(P_signal / P_noise) equals `snr_db`; (T,) float32."""
    noise_power = signal_power(noise)
    speech_power = signal_power(signal)
    if noise_power == 0.0 or speech_power == 0.0:
        return signal
    gain = np.float32(np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10))))
    mixed = noise * gain
    mixed += signal
    return mixed


def random_excerpt(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of `length` samples; short sources are repeated to fill it."""
    if len(samples) == 0:
        return np.zeros(length, dtype=np.float32)
    if len(samples) < length:
        samples = np.tile(samples, -(-length // len(samples)))
    start = int(rng.integers(0, len(samples) - length + 1))
    return samples[start : start + length]


class RoomResponse:
    """An energy-normalised RIR, its direct-path delay (its peak), and its spectrum for each
    FFT size used, so a chunk's reverberation costs one forward and one inverse real FFT."""

    def __init__(self, rir: np.ndarray):
        energy = np.sqrt(np.sum(np.square(rir, dtype=np.float64)))
        self.silent = energy == 0.0
        self.rir = (rir / energy).astype(np.float32) if not self.silent else rir.astype(np.float32)
        self.delay = int(np.argmax(np.abs(self.rir)))
        self._spectra: dict[int, np.ndarray] = {}

    def spectrum(self, size: int) -> np.ndarray:
        if size not in self._spectra:
            self._spectra[size] = scipy.fft.rfft(self.rir, size)
        return self._spectra[size]

    def apply(self, samples: np.ndarray) -> np.ndarray:
        """(T,) float32 convolved with the RIR, aligned on its direct path; (T,) float32."""
        if self.silent:
            return samples
        size = scipy.fft.next_fast_len(len(samples) + len(self.rir) - 1, real=True)
        wet = scipy.fft.irfft(scipy.fft.rfft(samples, size) * self.spectrum(size), size)
        return wet[self.delay : self.delay + len(samples)].astype(np.float32, copy=False)


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with an energy-normalised RIR, aligned on its direct path (its peak),
    so a delta RIR returns the signal unchanged and speech keeps its timing.

    (T,) float32 in and out; float32 FFT convolution (scipy.fft). Training caches each
    RIR's spectrum through `RoomResponse` instead of calling this."""
    return RoomResponse(rir).apply(samples)


@lru_cache(maxsize=16)
def _resampler(source_rate: int, sample_rate: int) -> object:
    import torchaudio.transforms

    return torchaudio.transforms.Resample(source_rate, sample_rate)


def speed_perturb(samples: np.ndarray, speed: float, sample_rate: int) -> np.ndarray:
    """Play `speed` times faster (pitch moves too, as sox `speed`): duration / speed.

    (T,) float32 -> (about T / speed,) float32, by torchaudio's windowed-sinc resampling
    from `sample_rate * speed` Hz, its kernel computed once per speed and cached."""
    if speed == 1.0:
        return samples
    import torch

    resampler = _resampler(round(sample_rate * speed), sample_rate)
    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    with torch.no_grad():
        return resampler(tensor).numpy()  # type: ignore[operator]


@dataclass
class NoiseKind:
    """One kind of additive noise: where it comes from, its SNR range, how many at once."""

    name: str
    pool: LazyAudioPool
    snr: tuple[float, float]
    count: tuple[int, int] = (1, 1)

    def sample(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        number = int(rng.integers(self.count[0], self.count[1] + 1))
        noise = np.zeros(length, dtype=np.float32)
        for _ in range(number):
            excerpt = self.pool.excerpt(rng, length)
            power = signal_power(excerpt)
            if power > 0:
                noise += excerpt * np.float32(1 / np.sqrt(power))
        return noise, float(rng.uniform(*self.snr))


def _pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] > value[1]:
        raise SpkverifError(f"augment.{name} must be a [low, high] pair, not {value!r}")
    return float(value[0]), float(value[1])


def noise_kinds(
    path: str | Path,
    sample_rate: int,
    noise_snr: object,
    music_snr: object,
    babble_snr: object,
    babble_speakers: object,
    cache_size: int,
) -> list[NoiseKind]:
    """A plain data directory is one kind of noise; a MUSAN directory gives three."""
    path = Path(path)
    if not path.is_dir():
        raise SpkverifError("no such noise directory", path)
    subsets = {name: path / f"musan_{name}" for name in ("noise", "music", "speech")}
    if not any(subset.is_dir() for subset in subsets.values()):
        return [NoiseKind("noise", LazyAudioPool(path, sample_rate, cache_size), _pair(noise_snr, "noise_snr"))]
    kinds = []
    if subsets["noise"].is_dir():
        kinds.append(
            NoiseKind("noise", LazyAudioPool(subsets["noise"], sample_rate, cache_size), _pair(noise_snr, "noise_snr"))
        )
    if subsets["music"].is_dir():
        kinds.append(
            NoiseKind("music", LazyAudioPool(subsets["music"], sample_rate, cache_size), _pair(music_snr, "music_snr"))
        )
    if subsets["speech"].is_dir():
        low, high = _pair(babble_speakers, "babble_speakers")
        kinds.append(
            NoiseKind(
                "babble",
                LazyAudioPool(subsets["speech"], sample_rate, cache_size),
                _pair(babble_snr, "babble_snr"),
                (int(low), int(high)),
            )
        )
    return kinds


class ChunkAugmenter:
    """Reverberation then additive noise, each applied with its own probability."""

    def __init__(self, noises: list[NoiseKind], rirs: LazyAudioPool | None, noise_prob: float, rir_prob: float):
        self.noises = noises
        self.rirs = rirs
        self.noise_prob = noise_prob if noises else 0.0
        self.rir_prob = rir_prob if rirs is not None else 0.0
        self._rooms: OrderedDict[str, RoomResponse] = OrderedDict()

    def room(self, index: int) -> RoomResponse:
        """The RIR `index` of the pool, normalised, with its spectra: the last `cache_size` used are
        kept (about 0.25 MB each for 2 s chunks)."""
        assert self.rirs is not None
        key = self.rirs.keys[index]
        if key in self._rooms:
            self._rooms.move_to_end(key)
            return self._rooms[key]
        room = self._rooms[key] = RoomResponse(self.rirs.get(index))
        if len(self._rooms) > self.rirs.cache_size:
            self._rooms.popitem(last=False)
        return room

    @property
    def active(self) -> bool:
        return self.noise_prob > 0 or self.rir_prob > 0

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.rirs is not None and rng.random() < self.rir_prob:
            samples = self.room(int(rng.integers(len(self.rirs)))).apply(samples)
        if self.noises and rng.random() < self.noise_prob:
            kind = self.noises[int(rng.integers(len(self.noises)))]
            noise, snr = kind.sample(len(samples), rng)
            samples = mix_at_snr(samples, noise, snr)
        return samples


class SpecAugment:
    """Frequency and time masking of features (Park et al. 2019), in training only.

    A plain callable, not a module, so it adds nothing to the model's state: the
    network that `extract` loads is the same with or without it.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 10):
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width

    def __call__(self, features: object) -> object:
        import torch

        assert isinstance(features, torch.Tensor)
        batch, frames, bins = features.shape
        masked = features.clone()
        for dimension, count, width, size in (
            (2, self.freq_masks, self.freq_width, bins),
            (1, self.time_masks, self.time_width, frames),
        ):
            for _ in range(count):
                widths = torch.randint(0, width + 1, (batch,), device=features.device)
                starts = (torch.rand(batch, device=features.device) * (size - widths).clamp_min(1)).long()
                positions = torch.arange(size, device=features.device)[None, :]
                mask = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
                masked = masked.masked_fill(mask[:, None, :] if dimension == 2 else mask[:, :, None], 0.0)
        return masked
