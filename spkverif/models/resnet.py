"""Thin ResNet34 on Kaldi fbank, as WeSpeaker's ResNet34-TSTP-emb256.

The fbank (frames x 80 bins) is a one-channel image. A 3x3 stem, then four
stages of [3, 4, 6, 3] basic residual blocks with 32, 64, 128 and 256 channels,
the last three halving both time and frequency; mean+std pooling over time of
every (channel, frequency) row, and a linear layer giving the 256-d embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from spkverif.base.registry import Count
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.pooling import StatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (1x1 when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(in_channels, out_channels, stride),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            _conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.activation = nn.ReLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(features) + self.shortcut(features))


class ResNet(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    >>> ResNet(80, base_channels=4, blocks=(1, 1, 1, 1), embedding_dim=16).eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        input_dim: int,
        base_channels: int = 32,
        blocks: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        embedding_dim: int = 256,
        unbiased_std: bool = False,
    ):
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(1, base_channels), nn.BatchNorm2d(base_channels), nn.ReLU())
        stages = []
        in_channels = base_channels
        frequencies = input_dim
        for index, count in enumerate(blocks):
            out_channels = base_channels * 2**index
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(in_channels, out_channels, stride)]
            layers += [BasicBlock(out_channels, out_channels) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
            frequencies = (frequencies - 1) // stride + 1
        self.stages = nn.Sequential(*stages)
        pooling_eps = 1e-7 if unbiased_std else 1e-5
        self.pooling = StatisticsPooling(in_channels * frequencies, pooling_eps, unbiased_std)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        image = features.transpose(1, 2).unsqueeze(1)
        maps = self.stages(self.stem(image))
        frames = maps.flatten(start_dim=1, end_dim=2)
        return self.embedding(self.pooling(frames))


@MODELS.register("resnet34")
@uses_frontend("kaldi_fbank")
def build_resnet34(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    embedding_dim: Count = 256,
    blocks: list[int] | tuple[int, ...] = (3, 4, 6, 3),
    unbiased_std: bool = False,
) -> SpeakerEmbeddingModel:
    """Thin ResNet34, 32 base channels, temporal statistics pooling, 256-d: 6.63M parameters.

    `unbiased_std: true` with `frontend: wespeaker_fbank` are WeSpeaker's TSTP standard
    deviation (sqrt of the unbiased variance + 1e-7) and fbank (Hamming window), for imported models.
    """
    encoder = ResNet(frontend.output_dim, base_channels, tuple(blocks), embedding_dim, unbiased_std)
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames=1, sample_rate=frontend.sample_rate)
