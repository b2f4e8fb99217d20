"""Front ends: waveform (B, T) in, features (B, frames, dims) out, inside the model's forward.

Each offers `output_dim`, `num_frames(num_samples)` and `samples_for_frames(num_frames)`.
"""

from spkverif.frontends.fbank import KaldiFbank
from spkverif.frontends.sinc import SincNet

__all__ = ["KaldiFbank", "SincNet"]
