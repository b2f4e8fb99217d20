"""Thin ResNets on Kaldi fbank, as WeSpeaker builds them (`wespeaker/models/resnet.py`).

The fbank (frames x 80 bins) is a one-channel image. A 3x3 stem, then four
stages of residual blocks with 32, 64, 128 and 256 channels (times 4 at the
output of a bottleneck block), the last three halving both time and frequency;
mean+std pooling over time of every (channel, frequency) row, and a linear layer
giving the 256-d embedding.

| name | blocks | per stage | WeSpeaker |
|---|---|---|---|
| `resnet34` | basic | [3, 4, 6, 3] | ResNet34-TSTP-emb256 |
| `resnet100` | basic | [6, 16, 24, 3] | SimAM_ResNet100's stages (`samresnet.py`), no SimAM, width 32 |
| `resnet221` | bottleneck | [6, 16, 48, 3] | ResNet221-TSTP-emb256 |
| `resnet293` | bottleneck | [10, 20, 64, 3] | ResNet293-TSTP-emb256 |

A depth counts every weighted layer: 2 per basic block, 3 per bottleneck, plus the
stem and the embedding layer (100 = 2 x 49 + 2, 221 = 3 x 73 + 2, 293 = 3 x 97 + 2).

Options of every size: `simam: true` weighs each block's output by SimAM's parameter-free
attention before the shortcut is added (`SimAM`); `pooling: attentive` replaces mean+std
pooling by attentive statistics (convolution, ReLU, BatchNorm, convolution, softmax over
time, `attention_bottleneck` wide). Both together, at 64 base channels, are WeSpeaker's
SimAM_ResNet34_ASP / SimAM_ResNet100_ASP (`samresnet.py`, Qin et al. 2022, the VoxBlink2
models).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf
from spkverif.models.base import SpeakerEmbeddingModel, image_memory_format
from spkverif.models.pooling import AttentiveStatisticsPooling, StatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class SimAM(nn.Module):
    """SimAM, a parameter-free attention (Yang et al., ICML 2021): each value weighed by the sigmoid
    of its inverse energy, (x - mean)^2 / (4 (var + lambda)) + 1/2, with the mean and the
    (n - 1) variance of its channel over frequency and time. Maps (B, C, F, T) -> (B, C, F, T).

    >>> SimAM()(torch.randn(2, 3, 4, 5)).shape
    torch.Size([2, 3, 4, 5])
    """

    def __init__(self, regulariser: float = 1e-4):
        super().__init__()
        self.regulariser = regulariser

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        deviation = (maps - maps.mean(dim=(2, 3), keepdim=True)).pow(2)
        variance = deviation.sum(dim=(2, 3), keepdim=True) / (maps.shape[2] * maps.shape[3] - 1)
        return maps * torch.sigmoid(deviation / (4 * (variance + self.regulariser)) + 0.5)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (1x1 when the shape changes); `simam`
    weighs the body's output by `SimAM` before the shortcut is added."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, simam: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(in_channels, out_channels, stride),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            _conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
        )
        self.attention: nn.Module = SimAM() if simam else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.activation = nn.ReLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.attention(self.body(features)) + self.shortcut(features))


class Bottleneck(nn.Module):
    """1x1 convolution down to `channels`, 3x3 (strided), 1x1 up to 4 x `channels`, each with
    BatchNorm, and a shortcut (1x1 when the shape changes): He et al. 2016's bottleneck block;
    `simam` as in `BasicBlock`."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, simam: bool = False):
        super().__init__()
        out_channels = self.expansion * channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            _conv3x3(channels, channels, stride),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.attention: nn.Module = SimAM() if simam else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.activation = nn.ReLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.attention(self.body(features)) + self.shortcut(features))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    `block`: "basic" (two 3x3 convolutions) or "bottleneck" (1x1, 3x3, 1x1, four times wider out).
    `simam`: SimAM in every block; `pooling`: "statistics" (mean+std; `unbiased_std` for WeSpeaker's
    TSTP) or "attentive" (WeSpeaker's ASP: raw moments, variance floored at 1e-5).

    >>> ResNet(80, base_channels=4, blocks=(1, 1, 1, 1), embedding_dim=16).eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 16])
    >>> ResNet(80, 4, (1, 2, 1, 1), 16, block="bottleneck").eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 16])
    >>> ResNet(80, 4, (1, 1, 1, 1), 16, simam=True, pooling="attentive").eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        input_dim: int,
        base_channels: int = 32,
        blocks: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        embedding_dim: int = 256,
        unbiased_std: bool = False,
        block: str = "basic",
        simam: bool = False,
        pooling: str = "statistics",
        attention_bottleneck: int = 128,
    ):
        super().__init__()
        unit = BLOCKS[block]
        expansion = getattr(unit, "expansion", 1)
        self.stem = nn.Sequential(_conv3x3(1, base_channels), nn.BatchNorm2d(base_channels), nn.ReLU())
        stages = []
        in_channels = base_channels
        frequencies = input_dim
        for index, count in enumerate(blocks):
            out_channels = base_channels * 2**index
            stride = 1 if index == 0 else 2
            layers = [unit(in_channels, out_channels, stride, simam)]
            layers += [unit(expansion * out_channels, out_channels, 1, simam) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = expansion * out_channels
            frequencies = (frequencies - 1) // stride + 1
        self.stages = nn.Sequential(*stages)
        self.pooling: StatisticsPooling | AttentiveStatisticsPooling
        if pooling == "attentive":
            self.pooling = AttentiveStatisticsPooling(
                in_channels * frequencies, attention_bottleneck, False, bottleneck_norm=True, moments="raw", tanh=False
            )
        else:
            self.pooling = StatisticsPooling(in_channels * frequencies, 1e-7 if unbiased_std else 1e-5, unbiased_std)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.memory_format = image_memory_format(base_channels)
        self.to(memory_format=self.memory_format)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        image = features.transpose(1, 2).unsqueeze(1).contiguous(memory_format=self.memory_format)
        maps = self.stages(self.stem(image))
        frames = maps.flatten(start_dim=1, end_dim=2)
        return self.embedding(self.pooling(frames))


PoolingName = Annotated[str, OneOf(("statistics", "attentive"), "resnet pooling")]


@MODELS.register("resnet34")
@uses_frontend("kaldi_fbank")
def build_resnet34(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    embedding_dim: Count = 256,
    blocks: list[int] | tuple[int, ...] = (3, 4, 6, 3),
    unbiased_std: bool = False,
    simam: bool = False,
    pooling: PoolingName = "statistics",
    attention_bottleneck: Count = 128,
) -> SpeakerEmbeddingModel:
    """Thin ResNet34, 32 base channels, temporal statistics pooling, 256-d: 6.63M parameters.

    `unbiased_std: true` with `frontend: wespeaker_fbank` are WeSpeaker's TSTP standard
    deviation (sqrt of the unbiased variance + 1e-7) and fbank (Hamming window), for imported models.
    `simam: true, pooling: attentive, base_channels: 64`: WeSpeaker's SimAM_ResNet34_ASP (25.2M).
    """
    encoder = ResNet(frontend.output_dim, base_channels, tuple(blocks), embedding_dim, unbiased_std, "basic", simam,
                     pooling, attention_bottleneck)  # fmt: skip
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames=1, sample_rate=frontend.sample_rate)


def _deep_resnet(
    frontend: nn.Module, base_channels: int, embedding_dim: int, blocks: list[int] | tuple[int, ...],
    unbiased_std: bool, block: str, simam: bool, pooling: str, attention_bottleneck: int,
) -> SpeakerEmbeddingModel:  # fmt: skip
    if len(blocks) != 4:
        raise SpkverifError(f"resnet blocks must be 4 counts, one per stage, not {list(blocks)}")
    encoder = ResNet(frontend.output_dim, base_channels, tuple(blocks), embedding_dim, unbiased_std, block, simam,
                     pooling, attention_bottleneck)  # fmt: skip
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames=1, sample_rate=frontend.sample_rate)


@MODELS.register("resnet100")
@uses_frontend("kaldi_fbank")
def build_resnet100(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    embedding_dim: Count = 256,
    blocks: list[int] | tuple[int, ...] = (6, 16, 24, 3),
    unbiased_std: bool = False,
    simam: bool = False,
    pooling: PoolingName = "statistics",
    attention_bottleneck: Count = 128,
) -> SpeakerEmbeddingModel:
    """Thin ResNet100: basic blocks [6, 16, 24, 3] (WeSpeaker's SimAM-ResNet100 stages), 32 base
    channels, temporal statistics pooling, 256-d: 12.90M parameters. `simam: true, pooling: attentive,
    base_channels: 64`: WeSpeaker's SimAM_ResNet100_ASP (50.2M)."""
    return _deep_resnet(frontend, base_channels, embedding_dim, blocks, unbiased_std, "basic", simam, pooling,
                        attention_bottleneck)  # fmt: skip


@MODELS.register("resnet221")
@uses_frontend("kaldi_fbank")
def build_resnet221(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    embedding_dim: Count = 256,
    blocks: list[int] | tuple[int, ...] = (6, 16, 48, 3),
    unbiased_std: bool = False,
    simam: bool = False,
    pooling: PoolingName = "statistics",
    attention_bottleneck: Count = 128,
) -> SpeakerEmbeddingModel:
    """ResNet221 as WeSpeaker's ResNet221-TSTP-emb256: bottleneck blocks [6, 16, 48, 3], 32 base
    channels, temporal statistics pooling, 256-d: 23.79M parameters."""
    return _deep_resnet(frontend, base_channels, embedding_dim, blocks, unbiased_std, "bottleneck", simam, pooling,
                        attention_bottleneck)  # fmt: skip


@MODELS.register("resnet293")
@uses_frontend("kaldi_fbank")
def build_resnet293(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    embedding_dim: Count = 256,
    blocks: list[int] | tuple[int, ...] = (10, 20, 64, 3),
    unbiased_std: bool = False,
    simam: bool = False,
    pooling: PoolingName = "statistics",
    attention_bottleneck: Count = 128,
) -> SpeakerEmbeddingModel:
    """ResNet293 as WeSpeaker's ResNet293-TSTP-emb256: bottleneck blocks [10, 20, 64, 3], 32 base
    channels, temporal statistics pooling, 256-d: 28.63M parameters."""
    return _deep_resnet(frontend, base_channels, embedding_dim, blocks, unbiased_std, "bottleneck", simam, pooling,
                        attention_bottleneck)  # fmt: skip
