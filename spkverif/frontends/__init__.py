"""Front ends: waveform (B, T) in, features (B, frames, dims) out, inside the model's forward.

Each offers `output_dim`, `num_frames(num_samples)` and `samples_for_frames(num_frames)`.
Filterbank front ends are also registered by name in `FILTERBANKS`, for builders
that take `frontend: NAME` (a model imported from another toolkit keeps its own).
"""

from torch import nn

from spkverif.frontends.fbank import KaldiFbank
from spkverif.frontends.sinc import SincNet
from spkverif.frontends.speechbrain_fbank import SpeechBrainFbank
from spkverif.registry import Registry

FILTERBANKS: Registry = Registry("front end")


@FILTERBANKS.register("kaldi_fbank")
def kaldi_fbank(num_mel_bins: int, sample_rate: int, dither: float) -> nn.Module:
    """Kaldi fbank with Povey's window, as Kaldi computes it, with mean normalisation (`KaldiFbank`)."""
    return KaldiFbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, dither=dither)


@FILTERBANKS.register("wespeaker_fbank")
def wespeaker_fbank(num_mel_bins: int, sample_rate: int, dither: float) -> nn.Module:
    """Kaldi fbank with a Hamming window, as WeSpeaker computes it, with mean normalisation (`KaldiFbank`)."""
    return KaldiFbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, dither=dither, window_type="hamming")


@FILTERBANKS.register("speechbrain_fbank")
def speechbrain_fbank(num_mel_bins: int, sample_rate: int, dither: float) -> nn.Module:
    """SpeechBrain's Fbank and sentence mean normalisation (`SpeechBrainFbank`); no dither."""
    return SpeechBrainFbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate)


__all__ = ["FILTERBANKS", "KaldiFbank", "SincNet", "SpeechBrainFbank"]
