"""Kaldi-compatible log-mel filterbanks, computed on a whole batch at once.

Matches `torchaudio.compliance.kaldi.fbank` (and so Kaldi's `compute-fbank-feats`)
frame for frame, for every option of that program that shapes the features: the
window (povey by default, hamming, hanning, sine, rectangular, blackman), DC
removal, pre-emphasis, power or magnitude spectrum, mel banks from torchaudio
(with VTLN warping), the log floored at float epsilon, the log energy, and
`snip_edges` framing. It runs as a module inside the model, on the batch's
device, so training and extraction see the same features; dither is applied only
in training mode.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative, OneOf, Positive, Range

_INT16_SCALE = 32768.0
_EPSILON = torch.finfo(torch.float32).eps
# Kaldi's window types (feature-window.cc), as torchaudio.compliance.kaldi builds them (sine is Kaldi's alone:
# sin(pi n / (N - 1)), the square root of hanning); WeSpeaker trains with hamming.
_WINDOWS = {
    "povey": lambda size, _: torch.hann_window(size, periodic=False, dtype=torch.float64).pow(0.85),
    "hamming": lambda size, _: torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64),
    "hanning": lambda size, _: torch.hann_window(size, periodic=False, dtype=torch.float64),
    "sine": lambda size, _: torch.sin(math.pi * torch.arange(size, dtype=torch.float64) / (size - 1)),
    "rectangular": lambda size, _: torch.ones(size, dtype=torch.float64),
    "blackman": lambda size, coeff: (
        coeff
        - 0.5 * torch.cos(2 * math.pi / (size - 1) * torch.arange(size, dtype=torch.float64))
        + (0.5 - coeff) * torch.cos(4 * math.pi / (size - 1) * torch.arange(size, dtype=torch.float64))
    ),
}
WINDOW_TYPES = tuple(_WINDOWS)


class KaldiFbank(nn.Module):
    """Kaldi's fbank (`compute-fbank-feats`, every option that shapes the features) with mean normalisation.

    Waveforms (B, T) -> features (B, frames, dims). Waveforms are in [-1, 1]
    (scaled to 16-bit range inside, as Kaldi reads integer samples; `int16_scale:
    false` keeps them as given, as 3D-Speaker runs torchaudio's fbank on the
    floats torchaudio.load returns: the same features but where a band's energy
    falls under the log's floor, float epsilon, and with `dither` and
    `energy_floor` in those units); `dims` is
    `num_mel_bins`, plus one column of log energy with `use_energy` (first, or
    last with `htk_compat`). The options carry Kaldi's names and meanings
    (`--frame-length` is `frame_length_ms`, `--preemphasis-coefficient` is
    `preemphasis`); `mean_norm` subtracts each utterance's mean per column
    (Kaldi's `apply-cmvn --norm-vars=false` on the utterance). Frames:
    `1 + (T - window) // shift` with `snip_edges`, else `(T + shift // 2) // shift`
    with the signal reflected at both ends.

    Raises `SpkverifError` for options Kaldi refuses (a window of fewer than 2
    samples, an odd FFT size, frequencies outside (0, Nyquist), fewer than 4 bins).

    >>> fbank = KaldiFbank(16000, num_mel_bins=80).eval()
    >>> fbank(torch.zeros(2, 16000)).shape
    torch.Size([2, 98, 80])
    """

    def __init__(
        self,
        sample_rate: int,
        /,
        num_mel_bins: Count = 80,
        frame_length_ms: Positive = 25.0,
        frame_shift_ms: Positive = 10.0,
        low_freq: NonNegative = 20.0,
        high_freq: float = 0.0,
        dither: NonNegative = 1.0,
        preemphasis: Annotated[float, Range(ge=0, le=1)] = 0.97,
        mean_norm: bool = True,
        window_type: Annotated[str, OneOf(WINDOW_TYPES, "fbank window")] = "povey",
        blackman_coeff: float = 0.42,
        remove_dc_offset: bool = True,
        round_to_power_of_two: bool = True,
        snip_edges: bool = True,
        use_energy: bool = False,
        raw_energy: bool = True,
        energy_floor: NonNegative = 0.0,
        htk_compat: bool = False,
        use_log_fbank: bool = True,
        use_power: bool = True,
        vtln_low: float = 100.0,
        vtln_high: float = -500.0,
        vtln_warp: Positive = 1.0,
        int16_scale: bool = True,
    ):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.input_scale = _INT16_SCALE if int16_scale else 1.0
        self.sample_rate = sample_rate
        self.window_size = int(sample_rate * frame_length_ms / 1000)
        self.window_shift = int(sample_rate * frame_shift_ms / 1000)
        if self.window_size < 2 or self.window_shift < 1:
            raise SpkverifError(
                f"fbank frames of {frame_length_ms:g} ms every {frame_shift_ms:g} ms at {sample_rate} Hz are "
                f"{self.window_size} samples every {self.window_shift}; Kaldi needs at least 2 every 1"
            )
        self.fft_size = 1 << math.ceil(math.log2(self.window_size)) if round_to_power_of_two else self.window_size
        if self.fft_size % 2:
            raise SpkverifError(f"fbank FFT size {self.fft_size} is odd: set round_to_power_of_two or an even frame")
        self.dither = dither
        self.preemphasis = preemphasis
        self.mean_norm = mean_norm
        self.remove_dc_offset = remove_dc_offset
        self.snip_edges = snip_edges
        self.use_energy = use_energy
        self.raw_energy = raw_energy
        self.log_energy_floor = math.log(energy_floor) if energy_floor > 0 else None
        self.htk_compat = htk_compat
        self.use_log_fbank = use_log_fbank
        self.use_power = use_power
        if window_type not in _WINDOWS:
            raise SpkverifError(f"unknown fbank window {window_type!r}; choose one of: {', '.join(sorted(_WINDOWS))}")
        window = _WINDOWS[window_type](self.window_size, blackman_coeff)
        vtln = (vtln_low, vtln_high, vtln_warp)
        banks = _mel_banks(num_mel_bins, self.fft_size, sample_rate, low_freq, high_freq, *vtln)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel_banks", banks.float().T.contiguous(), persistent=False)
        self.register_buffer("mel_banks_paired", self.mel_banks.repeat_interleave(2, dim=0), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)

    def num_frames(self, num_samples: int) -> int:
        if not self.snip_edges:
            wanted = (num_samples + self.window_shift // 2) // self.window_shift
            return min(wanted, self._reflected_frames(num_samples))
        if num_samples < self.window_size:
            return 0
        return 1 + (num_samples - self.window_size) // self.window_shift

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames."""
        if self.snip_edges:
            return self.window_size + (num_frames - 1) * self.window_shift
        samples = max(1, num_frames * self.window_shift - self.window_shift // 2)
        while self.num_frames(samples) < num_frames:
            samples += 1
        return samples

    def _reflected_frames(self, num_samples: int) -> int:
        """Frames the signal reflected once at each end holds (`snip_edges: false`); fewer for very short input."""
        length = 2 * num_samples + self.window_size // 2 - self.window_shift // 2
        if num_samples < 1 or length < self.window_size:
            return 0
        return 1 + (length - self.window_size) // self.window_shift

    def _frames(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, frames, window_size), Kaldi's framing (feature-window.cc `ExtractWindow`)."""
        if self.snip_edges:
            return samples.unfold(-1, self.window_size, self.window_shift)
        reflected = samples.flip(-1)
        pad = self.window_size // 2 - self.window_shift // 2
        if pad > 0:
            extended = torch.cat((reflected[..., samples.shape[-1] - pad :], samples, reflected), dim=-1)
        else:
            extended = torch.cat((samples[..., -pad:], reflected), dim=-1)
        frames = extended.unfold(-1, self.window_size, self.window_shift)
        return frames[..., : self.num_frames(samples.shape[-1]), :]

    def _log_energy(self, frames: torch.Tensor) -> torch.Tensor:
        """Log of each frame's energy, floored at float epsilon and at `energy_floor`: (B, frames, 1)."""
        energy = frames.pow(2).sum(dim=-1, keepdim=True).clamp_min(_EPSILON).log()
        return energy if self.log_energy_floor is None else energy.clamp_min(self.log_energy_floor)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, T) in [-1, 1] -> features (B, frames, dims), float32: `unnormalised`, then `normalise`."""
        return self.normalise(self.unnormalised(waveforms))

    @property
    def cuts_frames(self) -> bool:
        """Whether the features of samples [k * window_shift, k * window_shift + n) are frames [k, k + m) of
        the whole utterance's `unnormalised` features (m = `num_frames(n)`): true with `snip_edges`, whose
        frames never reach past the signal. Training computes them once an utterance where this holds
        (`data.precompute_features`)."""
        return self.snip_edges

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """`mean_norm`'s step on (B, frames, dims): each item's mean over its frames subtracted."""
        if not self.mean_norm:
            return features
        return features - features.mean(dim=1, keepdim=True)

    def unnormalised(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, frames, dims): the features before `normalise`, in float32 whatever the autocast."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            samples = waveforms.float() * self.input_scale
            frames = self._frames(samples)
            if self.training and self.dither > 0:
                frames = frames + self.dither * torch.randn_like(frames)
            if self.remove_dc_offset:
                frames = frames - frames.mean(dim=-1, keepdim=True)
            energy = self._log_energy(frames) if self.use_energy and self.raw_energy else None
            # Pre-emphasis and the window are written straight into the zero-padded FFT input, and the power
            # is re^2 + im^2: no concatenated copy, no padding copy, no square root (abs) then square.
            padded = frames.new_empty(*frames.shape[:-1], self.fft_size)
            padded[..., self.window_size :] = 0.0
            if self.preemphasis:
                padded[..., 1 : self.window_size] = torch.addcmul(
                    frames[..., 1:], frames[..., :-1], frames.new_tensor(-self.preemphasis)
                )
                padded[..., 0] = frames[..., 0] * (1.0 - self.preemphasis)
            else:
                padded[..., : self.window_size] = frames
            padded[..., : self.window_size] *= self.window
            if self.use_energy and not self.raw_energy:
                energy = self._log_energy(padded)
            features = self._mel_energies(padded)
            if self.use_log_fbank:
                features = features.clamp_min(_EPSILON).log()
            if energy is not None:
                features = torch.cat((features, energy) if self.htk_compat else (energy, features), dim=-1)
        return features

    def _mel_energies(self, padded: torch.Tensor) -> torch.Tensor:
        """Windowed frames (B, frames, fft_size) -> mel energies (B, frames, num_mel_bins)."""
        if not self.use_power:
            return torch.matmul(torch.fft.rfft(padded).abs(), self.mel_banks)
        # (re, im) pairs squared, then one product with the mel matrix repeated per pair: the power
        # spectrum's sum re^2 + im^2 happens inside the matrix product.
        spectrum = torch.view_as_real(torch.fft.rfft(padded)).flatten(start_dim=-2)
        return torch.matmul(spectrum * spectrum, self.mel_banks_paired)


def _mel_banks(
    num_mel_bins: int,
    fft_size: int,
    sample_rate: int,
    low_freq: float,
    high_freq: float,
    vtln_low: float,
    vtln_high: float,
    vtln_warp: float,
) -> torch.Tensor:
    """Kaldi's triangular mel banks (mel-computations.cc, via torchaudio), (num_mel_bins, fft_size // 2 + 1).

    Raises `SpkverifError` where Kaldi (and torchaudio's assertions) would refuse the options.
    """
    nyquist = sample_rate / 2
    high = high_freq + nyquist if high_freq <= 0 else high_freq
    if num_mel_bins < 4:
        raise SpkverifError(f"fbank needs at least 4 mel bins, not {num_mel_bins}")
    if not (0 <= low_freq < nyquist and 0 < high <= nyquist and low_freq < high):
        raise SpkverifError(
            f"fbank needs 0 <= low_freq < high_freq <= {nyquist:g} Hz (half the sample rate; high_freq <= 0 "
            f"counts back from it); got low_freq {low_freq:g} and high_freq {high_freq:g}"
        )
    vtln_top = vtln_high + nyquist if vtln_high < 0 else vtln_high
    if vtln_warp != 1.0 and not (low_freq < vtln_low < high and 0 < vtln_top < high and vtln_low < vtln_top):
        raise SpkverifError(
            f"fbank VTLN needs low_freq < vtln_low < vtln_high < high_freq; got {vtln_low:g} and {vtln_high:g}"
        )
    banks, _ = kaldi.get_mel_banks(
        num_mel_bins, fft_size, float(sample_rate), low_freq, high_freq, vtln_low, vtln_high, vtln_warp
    )
    return torch.nn.functional.pad(banks, (0, 1))
