"""Front ends: waveform (B, T) in, features (B, frames, dims) out, inside the model's forward."""

from spkverif.frontends.fbank import KaldiFbank

__all__ = ["KaldiFbank"]
