"""ReDimNet2's log-mel spectrogram (IDRnD's `redimnet2/layers/features_tf.py`, `TFMelBanks`, the
`feat_type: tf` of the released recipes), written anew.

What the released ReDimNet2 checkpoints were trained on, and so what `spkverif import redimnet2`
gives them:

1. with `normalize_signal`, each waveform standardised: (x - mean) / (std + 1e-8), the biased std;
2. pre-emphasis `y[n] = x[n] - 0.97 x[n-1]` with the first sample reflected (`x[-1] = x[1]`);
3. frames of `win_length` samples every `hop_length`, the signal padded by `hop_length // 2`
   zeros at both ends (no centring on `n_fft`), times a symmetric Hamming window;
4. the power of DFT bins 0 .. n_fft/2 - 1 (a `n_fft`-point DFT; the Nyquist bin is left out),
   clipped to [1e-8, 1e8];
5. triangular HTK-mel filters, `num_mel_bins` of them evenly spaced in mel between `f_min` and
   `f_max`, not area-normalised, which place DFT bin k (k >= 1) at k * (sample_rate / 2) /
   (n_fft / 2 - 1) Hz and give bin 0 no weight (as IDRnD's TensorFlow-style matrix does);
   the energies clipped to [1e-8, 1e8];
6. `log(energy + 1e-8)`, then each utterance's mean per bin subtracted.

Frames: `1 + (T + 2 * (hop_length // 2) - win_length) // hop_length`. The DFT is one matrix product
on `unfold`ed frames, so the front end traces (TorchScript) and exports (ONNX).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import nn
from torch.nn import functional

from spkverif.base.registry import Count, NonNegative, Range
from spkverif.frontends.redimnet_mel import check_framing, preemphasise

_EPS = 1e-8  # the signal's std offset, the clipping floor (1 / it the ceiling) and the log offset


def _mel(hertz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hertz / 700.0)


def mel_filters(num_bins: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """The (n_fft / 2, num_bins) filter matrix of step 5 (module doc), in float32."""
    edges = torch.linspace(float(_mel(torch.tensor(f_min))), float(_mel(torch.tensor(f_max))), num_bins + 2,
                           dtype=torch.float64)  # fmt: skip
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    bins = _mel(torch.linspace(0, sample_rate // 2, n_fft // 2, dtype=torch.float64)[1:])[:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0)
    return torch.cat([torch.zeros(1, num_bins, dtype=torch.float64), weights]).float()


class ReDimNet2Mel(nn.Module):
    """Standardisation, pre-emphasis, windowed DFT power, mel filters, log and mean normalisation
    (IDRnD's `TFMelBanks`, module doc).

    Waveforms (B, T) in [-1, 1], T >= win_length - 2 * (hop_length // 2) -> features (B, frames,
    num_mel_bins), float32 whatever the autocast. Raises `SpkverifError` for a window longer than the
    FFT or frequencies outside [0, Nyquist].

    >>> ReDimNet2Mel(16000).eval()(torch.zeros(2, 16000)).shape
    torch.Size([2, 99, 72])
    """

    def __init__(
        self,
        sample_rate: int,
        /,
        num_mel_bins: Count = 72,
        n_fft: Count = 512,
        win_length: Count = 400,
        hop_length: Count = 160,
        f_min: NonNegative = 20.0,
        f_max: NonNegative = 7600.0,
        preemphasis: Annotated[float, Range(ge=0, le=1)] = 0.97,
        normalize_signal: bool = True,
    ):
        super().__init__()
        check_framing("redimnet2_mel", sample_rate, n_fft, win_length, f_min, f_max)
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.win_length = win_length
        self.hop_length = hop_length
        self.preemphasis = preemphasis
        self.normalize_signal = normalize_signal
        samples = torch.arange(win_length, dtype=torch.float64)[:, None]
        angles = 2 * math.pi * samples * torch.arange(n_fft // 2, dtype=torch.float64) / n_fft
        window = torch.hamming_window(win_length, periodic=False, dtype=torch.float64)[:, None]
        dft = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float() * window.float()
        self.register_buffer("dft", dft, persistent=False)  # (win_length, n_fft): cosines, then sines
        self.register_buffer("mel_banks", mel_filters(num_mel_bins, n_fft, sample_rate, f_min, f_max), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        padded = num_samples + 2 * (self.hop_length // 2)
        return 1 + (padded - self.win_length) // self.hop_length if padded >= self.win_length else 0

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames."""
        return max(1, (num_frames - 1) * self.hop_length + self.win_length - 2 * (self.hop_length // 2))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            samples = waveforms.float().unsqueeze(1)
            if self.normalize_signal:
                mean = samples.mean(dim=2, keepdim=True)
                samples = (samples - mean) / (samples.std(dim=2, keepdim=True, unbiased=False) + _EPS)
            if self.preemphasis:
                samples = preemphasise(samples, self.preemphasis)
            half = self.hop_length // 2
            samples = functional.pad(samples, (half, half)).squeeze(1)
            spectrum = samples.unfold(-1, self.win_length, self.hop_length) @ self.dft
            real, imaginary = spectrum.chunk(2, dim=-1)
            power = (real.square() + imaginary.square()).clamp(_EPS, 1 / _EPS)
            energies = (power @ self.mel_banks).clamp(_EPS, 1 / _EPS)
            features = (energies + _EPS).log()
            features = features - features.mean(dim=1, keepdim=True)
        return features


__all__ = ["ReDimNet2Mel", "mel_filters"]
