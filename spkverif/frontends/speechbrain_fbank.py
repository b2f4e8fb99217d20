"""SpeechBrain's log-mel filterbank (`speechbrain.lobes.features.Fbank`) and sentence mean normalisation.

A front end of ours so that an ECAPA-TDNN imported from SpeechBrain
(`spkverif import speechbrain`) sees the features it was trained on. It differs
from Kaldi's fbank (`KaldiFbank`) throughout: a centred STFT (frames padded with
zeros by n_fft / 2 at both ends), a periodic Hamming window, no DC removal, no
pre-emphasis, triangular filters placed by SpeechBrain's own mel formula on the
FFT bin frequencies, 10 log10 of the energies floored at 1e-10 and at 80 dB below
each utterance's loudest value, then each utterance's mean subtracted
(`InputNormalization(norm_type="sentence", std_norm=False)`). Computed here
from the formulas of SpeechBrain's `STFT`, `Filterbank` and `InputNormalization`
(SpeechBrain 1.x); a test checks it against SpeechBrain's own modules.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spkverif.base.registry import Count, NonNegative, Positive


def _to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


class SpeechBrainFbank(nn.Module):
    """SpeechBrain's Fbank and sentence mean normalisation, for imported ECAPA-TDNNs; no dither.

    Waveforms (B, T) in [-1, 1] -> log-mel features (B, 1 + T // hop, num_mel_bins);
    `f_max: null` is half the sample rate.

    >>> SpeechBrainFbank(16000, num_mel_bins=80).eval()(torch.zeros(2, 16000)).shape
    torch.Size([2, 101, 80])
    """

    def __init__(
        self,
        sample_rate: int,
        /,
        num_mel_bins: Count = 80,
        n_fft: Count = 400,
        win_length_ms: Positive = 25.0,
        hop_length_ms: Positive = 10.0,
        f_min: NonNegative = 0.0,
        f_max: NonNegative | None = None,
        amin: Positive = 1e-10,
        top_db: Positive = 80.0,
        mean_norm: bool = True,
    ):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = round(sample_rate / 1000.0 * win_length_ms)
        self.hop_length = round(sample_rate / 1000.0 * hop_length_ms)
        self.amin = amin
        self.top_db = top_db
        self.mean_norm = mean_norm
        f_max = sample_rate // 2 if f_max is None else f_max
        mel = torch.linspace(_to_mel(f_min), _to_mel(f_max), num_mel_bins + 2)
        hz = 700 * (10 ** (mel / 2595) - 1)
        band = (hz[1:] - hz[:-1])[:-1]
        centre = hz[1:-1]
        frequencies = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
        slope = (frequencies.repeat(num_mel_bins, 1) - centre[:, None]) / band[:, None]
        banks = torch.max(torch.zeros(1), torch.min(slope + 1.0, -slope + 1.0)).transpose(0, 1)
        self.register_buffer("window", torch.hamming_window(self.win_length), persistent=False)
        self.register_buffer("mel_banks", banks.contiguous(), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length if num_samples > 0 else 0

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames."""
        return max(1, (num_frames - 1) * self.hop_length)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            spectrum = torch.stft(
                waveforms.float(),
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window,
                center=True,
                pad_mode="constant",
                normalized=False,
                onesided=True,
                return_complex=True,
            )
            power = torch.view_as_real(spectrum).transpose(2, 1).pow(2).sum(-1)
            features = 10 * torch.log10(torch.clamp(torch.matmul(power, self.mel_banks), min=self.amin))
            floor = features.amax(dim=(-2, -1)) - self.top_db
            features = torch.max(features, floor[:, None, None])
            if self.mean_norm:
                features = features - features.mean(dim=1, keepdim=True)
        return features
