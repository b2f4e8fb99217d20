"""Kaldi-compatible log-mel filterbanks, computed on a whole batch at once.

Matches `torchaudio.compliance.kaldi.fbank` (and so Kaldi's `compute-fbank-feats`)
frame for frame: povey window, DC removal, pre-emphasis, power spectrum, mel
banks from torchaudio, log floored at float epsilon, snip_edges framing. It
runs as a module inside the model, on the batch's device, so training and
extraction see the same features; dither is applied only in training mode.
"""

from __future__ import annotations

import math

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from spkverif.errors import SpkverifError

_INT16_SCALE = 32768.0
# Kaldi's window types (feature-window.cc), as torchaudio.compliance.kaldi builds them; WeSpeaker trains with hamming.
_WINDOWS = {
    "povey": lambda size: torch.hann_window(size, periodic=False, dtype=torch.float64).pow(0.85),
    "hamming": lambda size: torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64),
}


class KaldiFbank(nn.Module):
    """Waveforms (B, T) in [-1, 1] -> log-mel features (B, frames, num_mel_bins).

    >>> fbank = KaldiFbank(num_mel_bins=80).eval()
    >>> fbank(torch.zeros(2, 16000)).shape
    torch.Size([2, 98, 80])
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        dither: float = 1.0,
        preemphasis: float = 0.97,
        mean_norm: bool = True,
        window_type: str = "povey",
    ):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.window_size = int(sample_rate * frame_length_ms / 1000)
        self.window_shift = int(sample_rate * frame_shift_ms / 1000)
        self.fft_size = 1 << math.ceil(math.log2(self.window_size))
        self.dither = dither
        self.preemphasis = preemphasis
        self.mean_norm = mean_norm
        if window_type not in _WINDOWS:
            raise SpkverifError(f"unknown fbank window {window_type!r}; choose one of: {', '.join(sorted(_WINDOWS))}")
        window = _WINDOWS[window_type](self.window_size)
        banks, _ = kaldi.get_mel_banks(
            num_mel_bins, self.fft_size, float(sample_rate), low_freq, high_freq, 100.0, -500.0, 1.0
        )
        banks = torch.nn.functional.pad(banks, (0, 1))
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel_banks", banks.float().T.contiguous(), persistent=False)
        self.register_buffer("mel_banks_paired", self.mel_banks.repeat_interleave(2, dim=0), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.window_size:
            return 0
        return 1 + (num_samples - self.window_size) // self.window_shift

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames."""
        return self.window_size + (num_frames - 1) * self.window_shift

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            samples = waveforms.float() * _INT16_SCALE
            frames = samples.unfold(-1, self.window_size, self.window_shift)
            if self.training and self.dither > 0:
                frames = frames + self.dither * torch.randn_like(frames)
            frames = frames - frames.mean(dim=-1, keepdim=True)
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
            # (re, im) pairs squared, then one product with the mel matrix repeated per pair: the power
            # spectrum's sum re^2 + im^2 happens inside the matrix product.
            spectrum = torch.view_as_real(torch.fft.rfft(padded)).flatten(start_dim=-2)
            features = torch.matmul(spectrum * spectrum, self.mel_banks_paired)
            features = features.clamp_min(torch.finfo(torch.float32).eps).log()
            if self.mean_norm:
                features = features - features.mean(dim=1, keepdim=True)
        return features
