"""ECAPA-TDNN (Desplanques, Thienpondt & Demuynck, 2020) on Kaldi fbank.

A 5-wide convolution, three SE-Res2Net blocks with dilations 2, 3 and 4, their
outputs concatenated (multi-layer feature aggregation) and mixed by a 1x1
convolution into 1536 channels (the paper's width for C = 512 and C = 1024
alike), attentive statistics pooling with global context, BatchNorm, and a
linear layer whose output is the 192-d embedding. Every convolution is followed
by ReLU then BatchNorm, the order of the paper's reference implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from spkverif.errors import SpkverifError
from spkverif.frontends.fbank import KaldiFbank
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.pooling import AttentiveStatisticsPooling
from spkverif.models.registry import MODELS
from spkverif.registry import Count, NonNegative


class ConvReluNorm(nn.Sequential):
    """Conv1d (padded to keep the length) -> ReLU -> BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2)),
            nn.ReLU(),
            nn.BatchNorm1d(out_channels),
        )


class Res2Convolution(nn.Module):
    """Res2Net's hierarchical convolution: channels split into `scale` groups; the
    first passes through, each later group is convolved after adding the previous
    group's output, so receptive fields grow group by group."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise SpkverifError(f"ecapa_tdnn channels ({channels}) must be a multiple of scale ({scale})")
        self.width = channels // scale
        self.convolutions = nn.ModuleList(
            ConvReluNorm(self.width, self.width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        groups = torch.split(features, self.width, dim=1)
        outputs = [groups[0]]
        previous = groups[0]
        for index, convolution in enumerate(self.convolutions):
            group = groups[index + 1]
            previous = convolution(group if index == 0 else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Rescale channels by a gate computed from their means over time."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.gate = nn.Sequential(
            nn.Linear(channels, bottleneck), nn.ReLU(), nn.Linear(bottleneck, channels), nn.Sigmoid()
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.gate(features.mean(dim=-1)).unsqueeze(-1)


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, plus the input."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8, se_bottleneck: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluNorm(channels, channels),
            Res2Convolution(channels, kernel_size, dilation, scale),
            ConvReluNorm(channels, channels),
            SqueezeExcitation(channels, se_bottleneck),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.body(features)


class EcapaTDNN(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    >>> encoder = EcapaTDNN(80, channels=64, embedding_dim=16, attention_bottleneck=8, aggregate_channels=96)
    >>> encoder.eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        input_dim: int,
        channels: int = 512,
        embedding_dim: int = 192,
        scale: int = 8,
        se_bottleneck: int = 128,
        attention_bottleneck: int = 128,
        global_context: bool = True,
        aggregate_channels: int = 1536,
    ):
        super().__init__()
        self.stem = ConvReluNorm(input_dim, channels, kernel_size=5)
        self.blocks = nn.ModuleList(SERes2Block(channels, 3, dilation, scale, se_bottleneck) for dilation in (2, 3, 4))
        self.aggregate = nn.Sequential(nn.Conv1d(3 * channels, aggregate_channels, kernel_size=1), nn.ReLU())
        self.pooling = AttentiveStatisticsPooling(aggregate_channels, attention_bottleneck, global_context)
        self.pooling_norm = nn.BatchNorm1d(self.pooling.output_dim)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.stem(features.transpose(1, 2))
        outputs = []
        for block in self.blocks:
            hidden = block(hidden)
            outputs.append(hidden)
        frames = self.aggregate(torch.cat(outputs, dim=1))
        return self.embedding(self.pooling_norm(self.pooling(frames)))


@MODELS.register("ecapa_tdnn")
def build_ecapa_tdnn(
    channels: Count = 512,
    embedding_dim: Count = 192,
    scale: Count = 8,
    se_bottleneck: Count = 128,
    attention_bottleneck: Count = 128,
    global_context: bool = True,
    aggregate_channels: Count = 1536,
    num_mel_bins: Count = 80,
    dither: NonNegative = 1.0,
    sample_rate: Count = 16000,
) -> SpeakerEmbeddingModel:
    """ECAPA-TDNN, channels 512 (6.19M parameters) or 1024 (14.66M), 192-d embedding."""
    frontend = KaldiFbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, dither=dither)
    encoder = EcapaTDNN(
        num_mel_bins,
        channels,
        embedding_dim,
        scale,
        se_bottleneck,
        attention_bottleneck,
        global_context,
        aggregate_channels,
    )
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames=1, sample_rate=sample_rate)
