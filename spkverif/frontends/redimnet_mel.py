"""ReDimNet's log-mel spectrogram (IDRnD's `redimnet/layers/features.py`, `MelBanks`), written anew.

What IDRnD's published checkpoints were trained on, and so what `spkverif import redimnet`
gives them: pre-emphasis `y[n] = x[n] - 0.97 x[n-1]` with the first sample reflected
(`x[-1] = x[1]`); torchaudio's `MelSpectrogram` (a centred STFT on the signal reflected by
`n_fft / 2` at both ends, a periodic Hamming window of `win_length` samples centred in
`n_fft`, the power spectrum, HTK-scale triangular filters between `f_min` and `f_max`
without area normalisation); `log(energy + 1e-6)`; then each utterance's mean per bin
subtracted (`spec_norm: mn`; `mvn` also divides by the standard deviation plus 1e-8, as
IDRnD computes it). Frames: `1 + T // hop_length`.

The STFT is framed by `unfold` and computed by `rfft`, so the front end traces
(TorchScript) and exports (ONNX's `DFT`); its features match torchaudio's to float
rounding (`tests/test_import_redimnet.py`).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torchaudio.functional as audio_functional
from torch import nn
from torch.nn import functional

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative, OneOf, Range

SPEC_NORMS = ("mn", "mvn", "none")
_LOG_OFFSET = 1e-6
_STD_OFFSET = 1e-8


def check_framing(name: str, sample_rate: int, n_fft: int, win_length: int, f_min: float, f_max: float) -> None:
    """One line (SpkverifError) for a window longer than the FFT or frequencies outside [0, Nyquist]."""
    if win_length > n_fft:
        raise SpkverifError(f"{name}: win_length {win_length} is longer than n_fft {n_fft}")
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise SpkverifError(
            f"{name} needs 0 <= f_min < f_max <= {sample_rate / 2:g} Hz (half the sample rate); "
            f"got {f_min:g} and {f_max:g}"
        )


def preemphasise(samples: torch.Tensor, coefficient: float) -> torch.Tensor:
    """y[n] = x[n] - coefficient x[n - 1] along the last axis of (B, 1, T), the first sample's
    predecessor reflected (x[-1] = x[1]), as IDRnD's front ends compute it."""
    previous = functional.pad(samples, (1, 0), mode="reflect")[..., :-1]
    return samples - coefficient * previous


class ReDimNetMel(nn.Module):
    """Pre-emphasis, torchaudio's mel spectrogram, log and mean normalisation (IDRnD's `MelBanks`).

    Waveforms (B, T) in [-1, 1], T > n_fft / 2 -> features (B, 1 + T // hop_length,
    num_mel_bins), float32 whatever the autocast. `f_max: null` is half the sample rate.
    Raises `SpkverifError` for a window longer than the FFT or frequencies outside
    [0, Nyquist].

    >>> ReDimNetMel(16000).eval()(torch.zeros(2, 16000)).shape
    torch.Size([2, 101, 72])
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
        f_max: NonNegative | None = 7600.0,
        preemphasis: Annotated[float, Range(ge=0, le=1)] = 0.97,
        spec_norm: Annotated[str, OneOf(SPEC_NORMS, "spectrogram normalisation")] = "mn",
    ):
        super().__init__()
        f_max = sample_rate / 2 if f_max is None else f_max
        check_framing("redimnet_mel", sample_rate, n_fft, win_length, f_min, f_max)
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.preemphasis = preemphasis
        self.spec_norm = spec_norm
        offset = (n_fft - win_length) // 2  # torch.stft centres a shorter window in the FFT frame
        window = torch.zeros(n_fft)
        window[offset : offset + win_length] = torch.hamming_window(win_length)
        banks = audio_functional.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, num_mel_bins, sample_rate)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_banks", banks, persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length if num_samples > self.n_fft // 2 else 0

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames (the reflection needs more than n_fft / 2 samples)."""
        return max(self.n_fft // 2 + 1, (num_frames - 1) * self.hop_length)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            samples = waveforms.float().unsqueeze(1)
            if self.preemphasis:
                samples = preemphasise(samples, self.preemphasis)
            half = self.n_fft // 2
            samples = functional.pad(samples, (half, half), mode="reflect").squeeze(1)
            frames = samples.unfold(-1, self.n_fft, self.hop_length) * self.window
            spectrum = torch.view_as_real(torch.fft.rfft(frames)).pow(2).sum(-1)
            features = torch.matmul(spectrum, self.mel_banks).add(_LOG_OFFSET).log()
            if self.spec_norm != "none":
                features = features - features.mean(dim=1, keepdim=True)
            if self.spec_norm == "mvn":
                features = features / (features.std(dim=1, keepdim=True) + _STD_OFFSET)
        return features


__all__ = ["SPEC_NORMS", "ReDimNetMel", "check_framing", "preemphasise"]
