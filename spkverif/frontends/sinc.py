"""SincNet (Ravanelli & Bengio 2018): a front end that learns its filterbank from the waveform.

The first layer is a bank of band-pass filters, each described by two learnable
cut-off frequencies instead of `kernel_size` free taps; the rest is a small
convolution stack. The layout follows the paper's network (pyannote-audio's
SincTDNN): waveform instance normalisation, 80 sinc filters of 251 taps, |.|,
then max-pool, instance normalisation and leaky ReLU after every convolution.

The cut-offs are squashed into their allowed ranges by sigmoids, so whatever an
optimiser does to the raw parameters, every filter keeps

    0 < min_low_hz <= low,   low + min_band_hz <= high <= sample_rate / 2 - min_low_hz

that is, ordered and strictly inside (0, Nyquist); no clamping after the step needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative

_FRACTION_LIMIT = 1e-4
_LOWEST_EDGE_OFFSET_HZ = 30.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _logit(fraction: torch.Tensor) -> torch.Tensor:
    fraction = fraction.clamp(_FRACTION_LIMIT, 1.0 - _FRACTION_LIMIT)
    return torch.log(fraction) - torch.log1p(-fraction)


class SincFilterbank(nn.Module):
    """Waveforms (B, 1, T) -> band-pass responses (B, num_filters, T').

    Each filter is the difference of two windowed sinc low-pass filters, scaled
    to unit gain in its pass band. Initialised as in the paper's network: bands
    mel-spaced from 30 Hz above `min_low_hz`, each widened by `min_band_hz`.

    >>> bank = SincFilterbank(num_filters=8, kernel_size=101)
    >>> low, high = bank.cutoffs()
    >>> bool((low > 0).all() and (high > low).all() and (high < 8000).all())
    True
    """

    def __init__(
        self,
        num_filters: int = 80,
        kernel_size: int = 251,
        sample_rate: int = 16000,
        stride: int = 1,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
    ):
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise SpkverifError(f"sinc kernel_size must be odd and at least 3, not {kernel_size}")
        nyquist = sample_rate / 2
        if min_low_hz <= 0 or min_band_hz <= 0 or 2 * min_low_hz + min_band_hz >= nyquist:
            raise SpkverifError(
                f"sinc filters need 0 < min_low_hz, 0 < min_band_hz and 2 * min_low_hz + min_band_hz < "
                f"{nyquist:g} Hz (half the sample rate); got {min_low_hz:g} and {min_band_hz:g}"
            )
        self.num_filters = num_filters
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        self.stride = stride
        self.min_low_hz = float(min_low_hz)
        self.min_band_hz = float(min_band_hz)
        self.max_high_hz = nyquist - self.min_low_hz

        edges = mel_to_hz(
            torch.linspace(
                float(hz_to_mel(torch.tensor(self.min_low_hz + _LOWEST_EDGE_OFFSET_HZ))),
                float(hz_to_mel(torch.tensor(self.max_high_hz - self.min_band_hz))),
                num_filters + 1,
                dtype=torch.float64,
            )
        )
        low = edges[:-1]
        high = low + self.min_band_hz + edges.diff()
        self.low_logit = nn.Parameter(_logit(self._low_fraction(low)).float())
        self.band_logit = nn.Parameter(_logit(self._high_fraction(low, high)).float())

        half = (kernel_size - 1) // 2
        taps = torch.arange(-half, half + 1, dtype=torch.float64)
        centre = taps == 0
        inverse_pi_n = torch.where(centre, 0.0, 1.0 / (math.pi * torch.where(centre, 1.0, taps)))
        window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float64)
        self.register_buffer("two_pi_t", (2 * math.pi * taps / sample_rate).float(), persistent=False)
        self.register_buffer("inverse_pi_n", inverse_pi_n.float(), persistent=False)
        self.register_buffer("centre", centre.float(), persistent=False)
        self.register_buffer("window", window.float(), persistent=False)

    def _low_fraction(self, low: torch.Tensor) -> torch.Tensor:
        return (low - self.min_low_hz) / (self.max_high_hz - self.min_band_hz - self.min_low_hz)

    def _high_fraction(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (high - low - self.min_band_hz) / (self.max_high_hz - self.min_band_hz - low)

    def cutoffs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Low and high cut-offs in Hz, (num_filters,) each; in range by construction."""
        low = self.min_low_hz + (self.max_high_hz - self.min_band_hz - self.min_low_hz) * torch.sigmoid(self.low_logit)
        high = low + self.min_band_hz + (self.max_high_hz - self.min_band_hz - low) * torch.sigmoid(self.band_logit)
        return low, high

    def filters(self) -> torch.Tensor:
        """Impulse responses (num_filters, 1, kernel_size), unit gain in the pass band.

        Tap n of the ideal band-pass [low, high] is (sin(2 pi high n / fs) - sin(2 pi low n / fs)) / (pi n),
        and 2 (high - low) / fs at n = 0; a Hamming window tapers it to `kernel_size` taps.
        """
        low, high = self.cutoffs()
        low, high = low.unsqueeze(1), high.unsqueeze(1)
        difference = torch.sin(high * self.two_pi_t) - torch.sin(low * self.two_pi_t)
        impulse = difference * self.inverse_pi_n + self.centre * (2 * (high - low) / self.sample_rate)
        return (impulse * self.window).unsqueeze(1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveforms, self.filters().to(waveforms.dtype), stride=self.stride)


class SincNet(nn.Module):
    """SincNet (Ravanelli & Bengio 2018): learned band-pass filters, then a small convolution stack.

    Waveforms (B, T) in [-1, 1] -> learned features (B, frames, channels[-1]).
    Waveform normalisation (zero mean, unit variance, then a learned gain and
    bias, as `InstanceNorm1d(1, affine=True)`), sinc filterbank, then
    `len(channels)` ordinary convolutions; each layer is conv (stride from
    `stride`) -> max-pool -> instance norm -> leaky ReLU (0.2), with |.| after
    the sinc layer. `num_filters` sinc filters of `kernel_size` taps (odd), cut-offs
    kept above `min_low_hz` and at least `min_band_hz` apart; `stride` holds one
    value per layer (the sinc layer first), `pool_size` is the max-pool's width.

    Raises `SpkverifError` for an even kernel, a stride list of the wrong length,
    or cut-off limits that leave no band below the Nyquist frequency.

    >>> frontend = SincNet(16000, num_filters=8, channels=(6, 6)).eval()
    >>> frontend(torch.zeros(2, 16000)).shape
    torch.Size([2, 114, 6])
    >>> frontend.num_frames(16000), frontend.samples_for_frames(1)
    (114, 621)
    """

    def __init__(
        self,
        sample_rate: int,
        /,
        num_filters: Count = 80,
        kernel_size: Count = 251,
        channels: list[int] | tuple[int, ...] = (60, 60),
        conv_kernel_size: Count = 5,
        stride: list[int] | tuple[int, ...] = (5, 1, 1),
        pool_size: Count = 3,
        waveform_norm: bool = True,
        instance_norm: bool = True,
        min_low_hz: NonNegative = 50.0,
        min_band_hz: NonNegative = 50.0,
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        stride = [int(s) for s in stride]
        if len(stride) != len(channels) + 1:
            raise SpkverifError(
                f"sinc stride needs one value per layer ({len(channels) + 1}: the sinc layer and "
                f"{len(channels)} convolutions), not {len(stride)}"
            )
        if min(stride) < 1 or pool_size < 1:
            raise SpkverifError("sinc stride and pool_size must be positive")
        self.sample_rate = sample_rate
        self.output_dim = channels[-1] if channels else num_filters
        self.filterbank = SincFilterbank(num_filters, kernel_size, sample_rate, stride[0], min_low_hz, min_band_hz)
        sizes = [num_filters, *channels]
        self.convolutions = nn.ModuleList(
            nn.Conv1d(sizes[i], sizes[i + 1], conv_kernel_size, stride=stride[i + 1]) for i in range(len(channels))
        )
        self.pool = nn.MaxPool1d(pool_size)
        self.waveform_norm = waveform_norm
        if waveform_norm:
            self.waveform_gain = nn.Parameter(torch.ones(1))
            self.waveform_bias = nn.Parameter(torch.zeros(1))
        self.norms = nn.ModuleList(
            nn.InstanceNorm1d(size, affine=True) if instance_norm else nn.Identity() for size in sizes
        )
        self.activation = nn.LeakyReLU(0.2)
        self._layers = [(kernel_size, stride[0])] + [(conv_kernel_size, s) for s in stride[1:]]
        self._pool_size = pool_size

    def num_frames(self, num_samples: int) -> int:
        """Output frames for an input of `num_samples` (0 if too short)."""
        length = num_samples
        for kernel, stride in self._layers:
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
            length //= self._pool_size
        return length

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` output frames."""
        length = num_frames
        for kernel, stride in reversed(self._layers):
            length = length * self._pool_size
            length = (length - 1) * stride + kernel
        return length

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            signal = waveforms.float().unsqueeze(1)
            filters = self.filterbank.filters()
            if self.waveform_norm:
                signal = F.instance_norm(signal)
            features = F.conv1d(signal, filters, stride=self.filterbank.stride)
            if self.waveform_norm:
                # The normalisation's learned affine map, moved past the linear filterbank:
                # conv(g x + b, h) = g conv(x, h) + b sum(h). Exact, and it spares training
                # a gradient with respect to the waveform, the costliest part of the backward pass.
                features = self.waveform_gain * features + self.waveform_bias * filters.sum(dim=-1)
            features = self.activation(self.norms[0](self.pool(features.abs())))
            for convolution, norm in zip(self.convolutions, self.norms[1:], strict=True):
                features = self.activation(norm(self.pool(convolution(features))))
        return features.transpose(1, 2)
