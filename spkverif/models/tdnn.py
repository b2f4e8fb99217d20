"""The x-vector TDNN of Snyder et al. (2018), on fbank (`xvector`) or SincNet (`sinc_tdnn`).

Each builder takes the built front end (`frontend:` in the configuration; Kaldi
fbank for `xvector`, SincNet for `sinc_tdnn` when none is named) and the TDNN's
own options.

Five frame layers (contexts [-2,2], {-2,0,2}, {-3,0,3}, {0}, {0}); mean+std
statistics pooling; segment layers. The embedding is a segment layer's affine
output, taken before its non-linearity, and it is what the loss head sees.

- `xvector` is Kaldi's layout: each frame layer affine -> ReLU -> BatchNorm, two
  segment layers, the embedding from the second.
- `sinc_tdnn` is the paper's network (pyannote-audio's SincTDNN): SincNet, then
  weight-normalised frame layers affine -> ReLU without BatchNorm, the embedding
  from the first segment layer (pyannote builds a second one but never uses it
  for embeddings, so we leave it out).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from spkverif.base.registry import Count
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.pooling import StatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend


class TdnnLayer(nn.Sequential):
    """Dilated 1-D convolution, ReLU, then BatchNorm without affine (as Kaldi's) if asked."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        batch_norm: bool = True,
        weight_norm: bool = False,
    ):
        convolution = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        if weight_norm:
            convolution = parametrizations.weight_norm(convolution)
        layers = [convolution, nn.ReLU()]
        if batch_norm:
            layers.append(nn.BatchNorm1d(out_channels, affine=False))
        super().__init__(*layers)
        self.context = (kernel_size - 1) * dilation


class XVectorTDNN(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    >>> XVectorTDNN(80, channels=64, stats_channels=128, embedding_dim=32).eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 32])
    """

    def __init__(
        self,
        input_dim: int,
        channels: int = 512,
        stats_channels: int = 1500,
        embedding_dim: int = 512,
        batch_norm: bool = True,
        weight_norm: bool = False,
        second_segment_layer: bool = True,
    ):
        super().__init__()
        norms = {"batch_norm": batch_norm, "weight_norm": weight_norm}
        self.frames = nn.Sequential(
            TdnnLayer(input_dim, channels, 5, 1, **norms),
            TdnnLayer(channels, channels, 3, 2, **norms),
            TdnnLayer(channels, channels, 3, 3, **norms),
            TdnnLayer(channels, channels, 1, 1, **norms),
            TdnnLayer(channels, stats_channels, 1, 1, **norms),
        )
        self.pooling = StatisticsPooling(stats_channels)
        self.segment6 = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.segment6_post: nn.Module = nn.Identity()
        self.segment7: nn.Module = nn.Identity()
        if second_segment_layer:
            self.segment6_post = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embedding_dim, affine=False))
            self.segment7 = nn.Linear(embedding_dim, embedding_dim)
        self.min_frames = 1 + sum(layer.context for layer in self.frames)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = self.frames(features.transpose(1, 2))
        statistics = self.pooling(frames)
        return self.segment7(self.segment6_post(self.segment6(statistics)))


@MODELS.register("xvector")
@uses_frontend("kaldi_fbank")
def build_xvector(
    frontend: nn.Module,
    /,
    channels: Count = 512,
    stats_channels: Count = 1500,
    embedding_dim: Count = 512,
) -> SpeakerEmbeddingModel:
    """x-vector on Kaldi fbank: 4.61M parameters at the defaults."""
    encoder = XVectorTDNN(frontend.output_dim, channels, stats_channels, embedding_dim)
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, encoder.min_frames, frontend.sample_rate)


@MODELS.register("sinc_tdnn")
@uses_frontend("sinc")
def build_sinc_tdnn(
    frontend: nn.Module,
    /,
    channels: Count = 512,
    stats_channels: Count = 1500,
    embedding_dim: Count = 512,
    batch_norm: bool = False,
    weight_norm: bool = True,
    second_segment_layer: bool = False,
) -> SpeakerEmbeddingModel:
    """The paper's SincTDNN: SincNet (strides 5, 1, 1) + weight-normalised TDNN, 512-d.

    `batch_norm: true, weight_norm: false, second_segment_layer: true` puts SincNet
    in front of exactly `xvector`'s TDNN, to compare front ends alone.
    """
    encoder = XVectorTDNN(
        frontend.output_dim,
        channels,
        stats_channels,
        embedding_dim,
        batch_norm=batch_norm,
        weight_norm=weight_norm,
        second_segment_layer=second_segment_layer,
    )
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, encoder.min_frames, frontend.sample_rate)
