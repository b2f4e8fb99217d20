"""The x-vector TDNN of Snyder et al. (2018), Kaldi's layout.

Five frame layers (contexts [-2,2], {-2,0,2}, {-3,0,3}, {0}, {0}), each
affine -> ReLU -> BatchNorm; mean+std statistics pooling; two segment layers.
The embedding is the second segment layer's affine output, taken before its
non-linearity, and it is what the loss head sees in training.
"""

from __future__ import annotations

import torch
from torch import nn

from spkverif.frontends.fbank import KaldiFbank
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.pooling import StatisticsPooling
from spkverif.models.registry import MODELS


class TdnnLayer(nn.Sequential):
    """Dilated 1-D convolution, ReLU, BatchNorm without affine (as Kaldi's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation),
            nn.ReLU(),
            nn.BatchNorm1d(out_channels, affine=False),
        )
        self.context = (kernel_size - 1) * dilation


class XVectorTDNN(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    >>> XVectorTDNN(80, channels=64, stats_channels=128, embedding_dim=32).eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 32])
    """

    def __init__(self, input_dim: int, channels: int = 512, stats_channels: int = 1500, embedding_dim: int = 512):
        super().__init__()
        self.frames = nn.Sequential(
            TdnnLayer(input_dim, channels, 5, 1),
            TdnnLayer(channels, channels, 3, 2),
            TdnnLayer(channels, channels, 3, 3),
            TdnnLayer(channels, channels, 1, 1),
            TdnnLayer(channels, stats_channels, 1, 1),
        )
        self.pooling = StatisticsPooling(stats_channels)
        self.segment6 = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.segment6_post = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embedding_dim, affine=False))
        self.segment7 = nn.Linear(embedding_dim, embedding_dim)
        self.min_frames = 1 + sum(layer.context for layer in self.frames)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = self.frames(features.transpose(1, 2))
        statistics = self.pooling(frames)
        return self.segment7(self.segment6_post(self.segment6(statistics)))


@MODELS.register("xvector")
def build_xvector(
    channels: int = 512,
    stats_channels: int = 1500,
    embedding_dim: int = 512,
    num_mel_bins: int = 80,
    dither: float = 1.0,
    sample_rate: int = 16000,
) -> SpeakerEmbeddingModel:
    """x-vector on Kaldi fbank: 4.61M parameters at the defaults."""
    frontend = KaldiFbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, dither=dither)
    encoder = XVectorTDNN(num_mel_bins, channels, stats_channels, embedding_dim)
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, encoder.min_frames, sample_rate)
