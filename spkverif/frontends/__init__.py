"""Front ends: waveform (B, T) in, features (B, frames, dims) out, inside the model's forward.

Each is registered by name in `FRONTENDS` (the `frontend:` section of a training
configuration; `spkverif list frontends`) and offers `sample_rate`, `output_dim`,
`num_frames(num_samples)` and `samples_for_frames(num_frames)` (and `spec_options`
where its options name files a model file does not hold). A builder takes the
sample rate first (the data's, `data.sample_rate`, passed in by `build_frontend`,
never an option of its own) and its options by keyword, their valid values in
their annotations; `spkverif.models.build_model` builds the front end and hands it
to the model's builder.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative, Registry
from spkverif.frontends.fbank import KaldiFbank
from spkverif.frontends.redimnet2_mel import ReDimNet2Mel
from spkverif.frontends.redimnet_mel import ReDimNetMel
from spkverif.frontends.sinc import SincNet
from spkverif.frontends.speechbrain_fbank import SpeechBrainFbank
from spkverif.frontends.ssl import Hubert, Wav2Vec2, WavLM

FRONTENDS: Registry = Registry("front end")

FRONTENDS.register("kaldi_fbank")(KaldiFbank)
FRONTENDS.register("speechbrain_fbank")(SpeechBrainFbank)
FRONTENDS.register("sinc")(SincNet)
FRONTENDS.register("wavlm")(WavLM)
FRONTENDS.register("hubert")(Hubert)
FRONTENDS.register("wav2vec2")(Wav2Vec2)
FRONTENDS.register("redimnet_mel")(ReDimNetMel)
FRONTENDS.register("redimnet2_mel")(ReDimNet2Mel)


@FRONTENDS.register("wespeaker_fbank")
def wespeaker_fbank(sample_rate: int, /, num_mel_bins: Count = 80, dither: NonNegative = 1.0) -> KaldiFbank:
    """Kaldi fbank with a Hamming window, as WeSpeaker computes it, with mean normalisation (`KaldiFbank`)."""
    return KaldiFbank(sample_rate, num_mel_bins=num_mel_bins, dither=dither, window_type="hamming")


@FRONTENDS.register("3dspeaker_fbank")
def threed_speaker_fbank(sample_rate: int, /, num_mel_bins: Count = 80, dither: NonNegative = 0.0) -> KaldiFbank:
    """Kaldi fbank as 3D-Speaker computes it (`speakerlab.process.processor.FBank`, mean_nor): Kaldi's
    povey window on the samples in [-1, 1] as given (not scaled to 16 bits), no dither, mean normalisation."""
    return KaldiFbank(sample_rate, num_mel_bins=num_mel_bins, dither=dither, int16_scale=False)


def build_frontend(name: str, options: dict[str, Any] | None, sample_rate: int) -> nn.Module:
    """The front end `name` with `options` for audio at `sample_rate` Hz.

    Raises `SpkverifError` for an unknown name or option, a value out of its range,
    and `sample_rate` among the options (the data's rate is the front end's).
    """
    options = dict(options or {})
    if "sample_rate" in options:
        raise SpkverifError(
            f"front end {name!r} has no option 'sample_rate': it runs at the data's rate (data.sample_rate)"
        )
    return FRONTENDS.build(name, sample_rate, **options)


__all__ = ["FRONTENDS", "KaldiFbank", "ReDimNet2Mel", "ReDimNetMel", "SincNet", "SpeechBrainFbank", "build_frontend"]
