"""ERes2Net and ERes2NetV2 on Kaldi fbank: Res2Net blocks with local and global feature fusion.

- ERes2Net: Chen et al., "An Enhanced Res2Net with Local and Global Feature Fusion for
  Speaker Verification", Interspeech 2023.
- ERes2NetV2: Chen et al., "ERes2NetV2: Boosting Short-Duration Speaker Verification
  Performance with Computational Efficiency", Interspeech 2024.

The layouts of 3D-Speaker's `speakerlab/models/eres2net/` (`ERes2Net.py`, `ERes2Net_huge.py`,
`ERes2NetV2.py`), written anew:

- The fbank (frames x 80 bins) as a one-channel image, a 3x3 convolution to `base_channels`
  (C) channels with BatchNorm and ReLU.
- Four stages of Res2Net blocks ([3, 4, 6, 3]) with C, 2C, 4C and 8C inner planes, the last
  three halving time and frequency. A block: a 1x1 convolution (strided) to `scale` groups
  of `floor(planes x base_width / 64)` channels, each group a 3x3 convolution after adding
  the previous group's output (hierarchical residuals), a 1x1 convolution to `expansion` x
  planes, and a shortcut (1x1 when the shape changes). Every activation inside a block is a
  ReLU clipped at 20 (3D-Speaker's `nn.Hardtanh(0, 20)`).
- **Local feature fusion** (stages 3 and 4): a group is joined to the previous group's output
  by attentional feature fusion (AFF) instead of a sum: w = 1 + tanh(A([x, y])), where A is a
  1x1 convolution to a quarter of the channels, BatchNorm, SiLU, a 1x1 convolution back and
  BatchNorm; the fused map is x w + y (2 - w).
- **Global feature fusion**: ERes2Net carries each stage's output down the stages, a strided
  3x3 convolution matching it to the next stage's output and AFF joining the two (stages
  1-2, then 12-3, then 123-4); ERes2NetV2 keeps only the last (stage 3 into stage 4).
- Mean and standard deviation over time of every (channel, frequency) row (sqrt of the
  unbiased variance + 1e-8, 3D-Speaker's TSTP), a linear layer to the embedding.

Shapes: features (B, T, 80) -> the last stage (B, 8C x expansion, 10, ceil(T / 8)) -> pooled
(B, 2 x 8C x expansion x 10) -> (B, embedding_dim).

| name and options | parameters | 3D-Speaker's model |
|---|---|---|
| `eres2net` (C 32, width 32, scale 2, expansion 2, 192-d) | 6,610,688 | ERes2Net-base, VoxCeleb (6.61M) |
| `eres2net`, `base_channels: 64` | 22,462,784 | ERes2Net-large, VoxCeleb (22.4M) |
| `eres2net`, C 64, width 24, scale 3, expansion 4 | 55,165,024 | `ERes2Net_huge.py` (200k speakers) |
| `eres2netv2` (C 64, width 26, scale 2, expansion 2, 192-d) | 17,859,632 | ERes2NetV2 (17.86M) |
| `eres2netv2`, width 24, scale 4, expansion 4 | 53,513,632 | ERes2NetV2 w24s4ep4 (200k speakers) |

Multiply-adds for 2 s (200 frames, `spkverif list models`): 3.37G (`eres2net`), 8.30G
(`eres2netv2`).
"""

from __future__ import annotations

import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count
from spkverif.models.base import SpeakerEmbeddingModel, image_memory_format
from spkverif.models.pooling import StatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend

CLIP = 20.0  # 3D-Speaker's "ReLU" in its blocks is Hardtanh(0, 20)
POOLING_EPS = 1e-8  # its TSTP: sqrt(unbiased variance + 1e-8)


def clipped_relu() -> nn.Hardtanh:
    return nn.Hardtanh(0.0, CLIP)


class FeatureFusion(nn.Module):
    """Attentional feature fusion (AFF, Dai et al. 2021, as ERes2Net uses it): two maps (B, C, F, T)
    -> one, x w + y (2 - w) with w = 1 + tanh(attention([x, y])) in (0, 2).

    >>> FeatureFusion(8)(torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)).shape
    torch.Size([2, 8, 5, 7])
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        inner = channels // reduction
        self.attention = nn.Sequential(
            nn.Conv2d(2 * channels, inner, 1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = 1.0 + torch.tanh(self.attention(torch.cat((x, y), dim=1)))
        return x * weight + y * (2.0 - weight)


class GroupSum(nn.Module):
    """Res2Net's join of a group to the previous group's output: their sum."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class Res2Block(nn.Module):
    """ERes2Net's block: (B, in_channels, F, T) -> (B, expansion x planes, F / stride, T / stride).

    `fuse`: each group joins the previous group's output by `FeatureFusion` (local feature
    fusion) instead of a sum.
    """

    def __init__(
        self, in_channels: int, planes: int, stride: int, base_width: int, scale: int, expansion: int, fuse: bool
    ):
        super().__init__()
        self.width = planes * base_width // 64  # 3D-Speaker's floor(planes * baseWidth / 64.0)
        out_channels = expansion * planes
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, self.width * scale, 1, stride=stride, bias=False),
            nn.BatchNorm2d(self.width * scale),
            clipped_relu(),
        )
        self.groups = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(self.width, self.width, 3, padding=1, bias=False), nn.BatchNorm2d(self.width), clipped_relu()
            )
            for _ in range(scale)
        )
        self.joins = nn.ModuleList(FeatureFusion(self.width) if fuse else GroupSum() for _ in range(scale - 1))
        self.expand = nn.Sequential(nn.Conv2d(self.width * scale, out_channels, 1, bias=False),
                                    nn.BatchNorm2d(out_channels))  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.activation = clipped_relu()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.reduce(image), self.width, dim=1)
        previous = self.groups[0](parts[0])
        outputs = [previous]
        for part, group, join in zip(parts[1:], self.groups[1:], self.joins, strict=True):
            previous = group(join(previous, part))
            outputs.append(previous)
        return self.activation(self.expand(torch.cat(outputs, dim=1)) + self.shortcut(image))


class ERes2Net(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    `global_fusions`: how many of the last stage boundaries the bottom-up fusion crosses, 3
    (ERes2Net: stages 1-2, 12-3, 123-4) or 1 (ERes2NetV2: stage 3 into 4).

    >>> encoder = ERes2Net(80, base_channels=4, blocks=(1, 1, 1, 1), embedding_dim=8)
    >>> encoder.eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 8])
    >>> ERes2Net(80, 4, (1, 2, 1, 1), 26, 2, 2, 8, global_fusions=1).eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        input_dim: int,
        base_channels: int = 32,
        blocks: tuple[int, ...] = (3, 4, 6, 3),
        base_width: int = 32,
        scale: int = 2,
        expansion: int = 2,
        embedding_dim: int = 192,
        global_fusions: int = 3,
    ):
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise SpkverifError(f"eres2net blocks must be 4 counts of at least 1, one per stage, not {list(blocks)}")
        if base_channels * base_width // 64 < 1:
            raise SpkverifError(
                f"eres2net base_channels {base_channels} x base_width {base_width} / 64 leaves no channel in a group"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(1, base_channels, 3, padding=1, bias=False), nn.BatchNorm2d(base_channels), nn.ReLU()
        )
        stages: list[nn.Module] = []
        widths: list[int] = []
        in_channels, frequencies = base_channels, input_dim
        for index, count in enumerate(blocks):
            planes, stride = base_channels * 2**index, 1 if index == 0 else 2
            fuse = index >= 2  # local feature fusion in stages 3 and 4
            layers = [Res2Block(in_channels, planes, stride, base_width, scale, expansion, fuse)]
            layers += [
                Res2Block(expansion * planes, planes, 1, base_width, scale, expansion, fuse) for _ in range(count - 1)
            ]
            stages.append(nn.Sequential(*layers))
            in_channels = expansion * planes
            widths.append(in_channels)
            frequencies = (frequencies - 1) // stride + 1
        self.stages = nn.ModuleList(stages)
        self.first_fused = len(blocks) - 1 - global_fusions
        self.downsample = nn.ModuleList(
            nn.Conv2d(widths[index], widths[index + 1], 3, stride=2, padding=1, bias=False)
            for index in range(self.first_fused, len(blocks) - 1)
        )
        self.fusions = nn.ModuleList(FeatureFusion(widths[index + 1]) for index in range(self.first_fused, 3))
        self.pooling = StatisticsPooling(in_channels * frequencies, POOLING_EPS, unbiased=True)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.memory_format = image_memory_format(base_channels)
        self.to(memory_format=self.memory_format)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.stem(features.transpose(1, 2).unsqueeze(1).contiguous(memory_format=self.memory_format))
        outputs = []
        for stage in self.stages:
            maps = stage(maps)
            outputs.append(maps)
        fused = outputs[self.first_fused]
        for later, downsample, fusion in zip(outputs[self.first_fused + 1 :], self.downsample, self.fusions,
                                             strict=True):  # fmt: skip
            fused = fusion(later, downsample(fused))
        return self.embedding(self.pooling(fused.flatten(start_dim=1, end_dim=2)))


def _build(
    frontend: nn.Module, base_channels: int, blocks: list[int] | tuple[int, ...], base_width: int, scale: int,
    expansion: int, embedding_dim: int, global_fusions: int,
) -> SpeakerEmbeddingModel:  # fmt: skip
    encoder = ERes2Net(frontend.output_dim, base_channels, tuple(blocks), base_width, scale, expansion, embedding_dim,
                       global_fusions)  # fmt: skip
    # The unbiased variance needs 2 frames after three halvings of time: 9 frames.
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames=9, sample_rate=frontend.sample_rate)


@MODELS.register("eres2net")
@uses_frontend("kaldi_fbank")
def build_eres2net(
    frontend: nn.Module,
    /,
    base_channels: Count = 32,
    blocks: list[int] | tuple[int, ...] = (3, 4, 6, 3),
    base_width: Count = 32,
    scale: Count = 2,
    expansion: Count = 2,
    embedding_dim: Count = 192,
) -> SpeakerEmbeddingModel:
    """ERes2Net (Chen et al. 2023): Res2Net with local (AFF in stages 3-4) and global feature fusion, 192-d.

    6.61M parameters (ERes2Net-base, 3D-Speaker's VoxCeleb model); `base_channels: 64` is
    ERes2Net-large (22.46M); `base_channels: 64, base_width: 24, scale: 3, expansion: 4`
    3D-Speaker's ERes2Net_huge (55.17M). `scale` is the groups a block splits into,
    `base_width` their width per 64 planes.
    """
    return _build(frontend, base_channels, blocks, base_width, scale, expansion, embedding_dim, 3)


@MODELS.register("eres2netv2")
@uses_frontend("kaldi_fbank")
def build_eres2netv2(
    frontend: nn.Module,
    /,
    base_channels: Count = 64,
    blocks: list[int] | tuple[int, ...] = (3, 4, 6, 3),
    base_width: Count = 26,
    scale: Count = 2,
    expansion: Count = 2,
    embedding_dim: Count = 192,
) -> SpeakerEmbeddingModel:
    """ERes2NetV2 (Chen et al. 2024): ERes2Net widened, global fusion only into the last stage, 192-d.

    17.86M parameters (3D-Speaker's published ERes2NetV2, `base_width: 26, scale: 2,
    expansion: 2`); its w24s4ep4 variant is `base_width: 24, scale: 4, expansion: 4`.
    """
    return _build(frontend, base_channels, blocks, base_width, scale, expansion, embedding_dim, 1)


__all__ = ["ERes2Net", "FeatureFusion", "Res2Block", "build_eres2net", "build_eres2netv2"]
