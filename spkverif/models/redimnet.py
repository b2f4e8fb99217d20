"""ReDimNet (Yakovlev et al., "Reshape Dimensions Network for Speaker Recognition", Interspeech
2024) on its own log-mel front end (`redimnet_mel`); the layout of IDRnD's `redimnet/model.py`
(`ReDimNetWrap`), written anew, so `spkverif import redimnet` loads their checkpoints.

The network keeps one volume, `channels x bins` (C x F), through every block and moves it
between two views: 2-D maps (B, c, f, T) and 1-D frames (B, c * f, T), with c * f = C * F at
every stage (each stage divides f by its stride and multiplies c by it).

- Stem: a 3x3 convolution from the (B, 1, F, T) spectrogram to C channels and a LayerNorm over
  channels, viewed as frames (B, C * F, T): output 0.
- Stage i (one row of the size table: stride, blocks, expansion, attention reduction): a
  softmax-weighted sum, per channel, of outputs 0..i (learned weights), viewed as maps; a
  (stride x 1) convolution with stride (stride, 1) to stride * c * expansion channels; `blocks`
  2-D blocks; with expansion > 1, a grouped 3x3 convolution, BatchNorm, GELU and 1x1 convolution
  back to stride * c channels; viewed as frames; then, with a reduction r, a 1-D time-context
  block on C * F / r channels (residual). Its output is output i + 1.
- 2-D blocks (`block_2d`): `convnext_like` (grouped 3x3, BatchNorm, GELU, 1x1, residual; `_relu`:
  with ReLU), `basic_resnet` (grouped 3x3 + 1x1 twice, with BatchNorm and ReLU, residual;
  `_fwse`: with a squeeze-excitation over frequency). Groups: channels / `group_divisor`.
- 1-D blocks (`block_1d`): a 1x1 reduction with LayerNorm, a mixer, a 1x1 expansion. Mixers:
  `conv+att` (depthwise ConvNeXt blocks of kernels 7, 19, 31, 59, then a 4-head post-norm
  transformer layer), `att` (depthwise 59-wide positional convolution with LayerNorm, then the
  transformer layer with a 2x feed-forward), `conv` (four ConvNeXt blocks of kernels 7, 15, 31),
  `fc` (two 1x1 convolutions).
- The weighted sum of all outputs, an optional 1x1 convolution with BatchNorm (`out_channels`),
  attentive statistics pooling (ECAPA's, with the utterance's mean and standard deviation as
  context with `global_context`; variance from raw moments, floored at 1e-7), BatchNorm, a
  linear layer to the embedding, and an optional BatchNorm (`embedding_norm`).

Features (B, frames, F) -> embeddings (B, embedding_dim). The sizes (`size: b0` ... `b6`, the
paper's names) are the configurations WeSpeaker's port of IDRnD's code lists
(`wespeaker/models/redimnet.py`, `ReDimNetB0` ... `B6`), in `SIZES`. Our counts (192-d, 72
bins; B0 on 60 bins, the paper's), against the paper's: B0 1.00M (1.0M), B1 1.91M (2.2M),
B2 4.89M (4.7M), B3 3.23M (3.0M), B4 6.44M (6.3M), B5 7.66M (9.2M), B6 15.02M (15.0M);
IDRnD's own code counts the same networks one parameter more (stage 0's constant mixing
weight). An imported checkpoint is built from its own configuration, whatever the table says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf, Range
from spkverif.models.base import SpeakerEmbeddingModel, image_memory_format
from spkverif.models.pooling import AttentiveStatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend

_NORM_EPS = 1e-6
_POOLING_EPS = 1e-7
_POOLING_BOTTLENECK = 128
_HEADS = 4
_POSITION_KERNEL = 59


@dataclass(frozen=True)
class ReDimNetSize:
    """One size: C, the paper's F (mel bins), blocks, groups and stages
    (stride, 2-D blocks, channel expansion, 1-D block reduction or 0 for none)."""

    channels: int
    mel_bins: int
    block_2d: str
    group_divisor: int
    global_context: bool
    stages: tuple[tuple[int, int, int, int], ...]
    block_1d: str = "conv+att"


SIZES = {
    "b0": ReDimNetSize(10, 60, "basic_resnet", 1, True,
                       ((1, 2, 1, 30), (2, 3, 2, 30), (1, 3, 3, 30), (2, 4, 2, 10), (1, 3, 1, 10))),
    "b1": ReDimNetSize(12, 72, "convnext_like", 8, False,
                       ((1, 2, 1, 0), (2, 3, 1, 0), (3, 4, 1, 12), (2, 5, 1, 12), (2, 3, 1, 8))),
    "b2": ReDimNetSize(16, 72, "convnext_like", 4, True,
                       ((1, 2, 1, 12), (2, 2, 1, 12), (1, 3, 1, 12), (2, 4, 1, 8), (1, 4, 1, 8), (2, 4, 1, 4))),
    "b3": ReDimNetSize(16, 72, "basic_resnet_fwse", 1, True,
                       ((1, 6, 4, 32), (2, 6, 2, 32), (1, 8, 2, 32), (2, 10, 2, 16), (1, 10, 1, 16), (2, 8, 1, 16))),
    "b4": ReDimNetSize(32, 72, "basic_resnet_fwse", 1, True,
                       ((1, 4, 2, 48), (2, 4, 2, 48), (1, 6, 2, 48), (2, 6, 1, 32), (1, 8, 1, 24), (2, 4, 1, 16))),
    "b5": ReDimNetSize(32, 72, "basic_resnet_fwse", 16, True,
                       ((1, 4, 2, 48), (2, 4, 2, 48), (1, 6, 2, 48), (2, 6, 1, 32), (1, 8, 1, 24), (2, 4, 1, 16))),
    "b6": ReDimNetSize(32, 72, "basic_resnet", 32, True,
                       ((1, 4, 4, 32), (2, 6, 2, 32), (1, 6, 2, 24), (3, 8, 1, 24), (1, 8, 1, 16), (2, 8, 1, 16))),
}  # fmt: skip
DEFAULT_SIZE = "b2"


class ChannelNorm(nn.Module):
    """LayerNorm over the channels (dim 1) of (B, C, ...), eps 1e-6, as ConvNeXt's channels-first one."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        shape = (-1,) + (1,) * (x.dim() - 2)
        return (x - mean) / torch.sqrt(variance + _NORM_EPS) * self.weight.view(shape) + self.bias.view(shape)


class ToMaps(nn.Module):
    """Frames (B, f * c, T) -> maps (B, c, f, T)."""

    def __init__(self, channels: int, bins: int):
        super().__init__()
        self.channels, self.bins = channels, bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.bins, self.channels)).transpose(1, 2)


class ToFrames(nn.Module):
    """Maps (B, c, f, T) -> frames (B, f * c, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).flatten(1, 2)


class LayerMix(nn.Module):
    """A per-channel softmax-weighted sum of `count` outputs (B, C, T) -> (B, C, T); the weights start equal."""

    def __init__(self, count: int, channels: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(1, count, channels, 1))

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return (torch.stack(outputs, dim=1) * torch.softmax(self.logits, dim=1)).sum(dim=1)


def _same(kernel: int | tuple[int, int]) -> int | tuple[int, int]:
    return tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


class ConvNeXtBlock(nn.Module):
    """Grouped convolutions of several kernels side by side, BatchNorm, activation, 1x1 back, residual;
    (B, C, T) with `dims` 1, (B, C, F, T) with 2. Groups: C / `group_divisor`."""

    def __init__(
        self, channels: int, kernels: list, dims: int = 2, group_divisor: int = 1, activation: str = "gelu"
    ):  # fmt: skip
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        groups = channels // group_divisor
        self.depthwise = nn.ModuleList(conv(channels, channels, k, padding=_same(k), groups=groups) for k in kernels)
        self.norm = norm(channels * len(kernels))
        self.activation = ACTIVATIONS[activation]()
        self.pointwise = conv(channels * len(kernels), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([conv(x) for conv in self.depthwise], dim=1)
        return x + self.pointwise(self.activation(self.norm(mixed)))


class FrequencyExcitation(nn.Module):
    """Squeeze-excitation over frequency: each bin of (B, C, F, T) scaled by a gate from the bins' means."""

    def __init__(self, bins: int, hidden: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(bins, hidden), nn.ReLU(), nn.Linear(hidden, bins), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(1, 3)))[:, None, :, None]


class ResidualBlock(nn.Module):
    """Two grouped 3x3 + 1x1 convolutions on (B, C, F, T), ReLU then BatchNorm after the first,
    BatchNorm after the second, an optional frequency excitation, residual, ReLU."""

    def __init__(self, channels: int, bins: int, group_divisor: int, excitation: bool):
        super().__init__()
        groups = channels // group_divisor
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=groups)
        self.pointwise1 = nn.Conv2d(channels, channels, 1)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=groups)
        self.pointwise2 = nn.Conv2d(channels, channels, 1)
        self.norm2 = nn.BatchNorm2d(channels)
        self.excitation = FrequencyExcitation(bins, min(64, max(channels, 32))) if excitation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(torch.relu(self.pointwise1(self.conv1(x))))
        y = self.excitation(self.norm2(self.pointwise2(self.conv2(y))))
        return torch.relu(y + x)


BLOCKS_2D: dict[str, Callable[[int, int, int], nn.Module]] = {
    "convnext_like": lambda c, f, g: ConvNeXtBlock(c, [(3, 3)], 2, g, "gelu"),
    "convnext_like_relu": lambda c, f, g: ConvNeXtBlock(c, [(3, 3)], 2, g, "relu"),
    "basic_resnet": lambda c, f, g: ResidualBlock(c, f, g, excitation=False),
    "basic_resnet_fwse": lambda c, f, g: ResidualBlock(c, f, g, excitation=True),
}


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, T, C), scaled dot products (scale (C / heads)^-0.5), no mask.

    Computed by `torch.nn.functional.scaled_dot_product_attention`, whose fused kernels never hold
    the (B, heads, T, T) weights at once: ReDimNet keeps every frame, so a 30 s utterance's would be
    144 MB a layer."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.output = (nn.Linear(channels, channels) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def split(projected: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, heads, T, C / heads)
            return projected.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.output(attended.transpose(1, 2).flatten(2))


class TransformerLayer(nn.Module):
    """Post-norm transformer encoder layer on frames (B, C, T): attention, then a GELU (tanh) feed-forward."""

    def __init__(self, channels: int, hidden: int, heads: int = _HEADS):
        super().__init__()
        self.attention = SelfAttention(channels, heads)
        self.norm1 = nn.LayerNorm(channels, eps=_NORM_EPS)
        self.feed_forward = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels)
        )
        self.norm2 = nn.LayerNorm(channels, eps=_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.feed_forward(x)).transpose(1, 2)


class PositionalConv(nn.Module):
    """x + LayerNorm(depthwise convolution of `kernel` frames), on (B, C, T)."""

    def __init__(self, channels: int, kernel: int = _POSITION_KERNEL):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = ChannelNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(x))


MIXERS_1D: dict[str, Callable[[int], nn.Module]] = {
    "conv+att": lambda h: nn.Sequential(
        *(ConvNeXtBlock(h, [k], dims=1) for k in (7, 19, 31, 59)), TransformerLayer(h, h)
    ),
    "att": lambda h: nn.Sequential(PositionalConv(h), TransformerLayer(h, 2 * h)),
    "conv": lambda h: nn.Sequential(*(ConvNeXtBlock(h, [7, 15, 31], dims=1) for _ in range(4))),
    "fc": lambda h: nn.Sequential(nn.Conv1d(h, 2 * h, 1), ChannelNorm(2 * h), nn.GELU(), nn.Conv1d(2 * h, h, 1)),
}


class TimeContext(nn.Module):
    """A residual 1-D block on frames (B, C, T): 1x1 to `hidden` channels with LayerNorm, a mixer, 1x1 back."""

    def __init__(self, channels: int, hidden: int, mixer: str):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv1d(channels, hidden, 1), ChannelNorm(hidden))
        self.mixer = MIXERS_1D[mixer](hidden)
        self.expand = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.mixer(self.reduce(x)))


class ReDimStage(nn.Module):
    """The weighted sum of the `inputs` earlier outputs (B, C * F, T), then the stage's layers
    (`body`: to maps, strided convolution, 2-D blocks, [squeeze], to frames, [1-D block])."""

    def __init__(self, inputs: int, width: int, body: list[nn.Module]):
        super().__init__()
        self.mix = LayerMix(inputs, width) if inputs > 1 else None
        self.body = nn.Sequential(*body)

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return self.body(outputs[0] if self.mix is None else self.mix(outputs))


class ReDimNet(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim) (module doc).

    `stages`: one (stride, blocks, expansion, reduction) per stage; reduction 0 is no 1-D block.

    >>> encoder = ReDimNet(12, channels=2, stages=((1, 1, 2, 2), (2, 1, 1, 0), (3, 1, 1, 3)),
    ...                    block_2d="basic_resnet_fwse", block_1d="att", group_divisor=1, embedding_dim=8)
    >>> encoder.eval()(torch.randn(2, 30, 12)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        input_dim: int,
        channels: int,
        stages: tuple[tuple[int, int, int, int], ...],
        block_2d: str = "convnext_like",
        block_1d: str = "conv+att",
        group_divisor: int = 1,
        global_context: bool = True,
        out_channels: int = 0,
        embedding_dim: int = 192,
        embedding_norm: bool = False,
    ):
        super().__init__()
        width = channels * input_dim
        _check_shapes(input_dim, channels, stages, group_divisor, attention="att" in block_1d)
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), ChannelNorm(channels), ToFrames())
        self.stages = nn.ModuleList()
        c, f = channels, input_dim
        for index, (stride, blocks, expansion, reduction) in enumerate(stages):
            wide = stride * c * expansion
            body: list[nn.Module] = [ToMaps(c, f), nn.Conv2d(c, wide, (stride, 1), stride=(stride, 1))]
            c, f = stride * c, f // stride
            body += [BLOCKS_2D[block_2d](wide, f, group_divisor) for _ in range(blocks)]
            if expansion != 1:
                body.append(nn.Sequential(
                    nn.Conv2d(wide, c, 3, padding=1, groups=c // group_divisor),
                    nn.BatchNorm2d(c, eps=_NORM_EPS),
                    nn.GELU(),
                    nn.Conv2d(c, c, 1),
                ))  # fmt: skip
            body.append(ToFrames())
            if reduction:
                body.append(TimeContext(width, width // reduction, block_1d))
            self.stages.append(ReDimStage(index + 1, width, body))
        self.mix = LayerMix(len(stages) + 1, width)
        self.aggregate: nn.Module = nn.Identity()
        if out_channels:
            self.aggregate = nn.Sequential(nn.Conv1d(width, out_channels, 1), nn.BatchNorm1d(out_channels))
        pooled = out_channels or width
        self.pooling = AttentiveStatisticsPooling(
            pooled, _POOLING_BOTTLENECK, global_context, eps=_POOLING_EPS, moments="raw"
        )
        self.pooling_norm = nn.BatchNorm1d(self.pooling.output_dim)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim) if embedding_norm else nn.Identity()
        self.to(memory_format=image_memory_format(channels))  # the 2-d weights; maps follow the weights' layout

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = [self.stem(features.transpose(1, 2).unsqueeze(1))]
        for stage in self.stages:
            outputs.append(stage(outputs))
        frames = self.aggregate(self.mix(outputs))
        return self.embedding_norm(self.embedding(self.pooling_norm(self.pooling(frames))))


def _check_shapes(
    bins: int, channels: int, stages: tuple[tuple[int, int, int, int], ...], divisor: int, attention: bool
) -> None:
    """One line for a stage table the network cannot be built from (SpkverifError); `attention`: the 1-D
    blocks have attention heads, which need their width to divide among them."""
    if not stages:
        raise SpkverifError("redimnet needs at least one stage")
    c, f = channels, bins
    for index, stage in enumerate(stages):
        if len(stage) != 4:
            raise SpkverifError(f"redimnet stage {index}: {list(stage)} is not [stride, blocks, expansion, reduction]")
        stride, blocks, expansion, reduction = stage
        if stride not in (1, 2, 3) or blocks < 0 or expansion < 1 or reduction < 0:
            raise SpkverifError(
                f"redimnet stage {index}: {list(stage)} needs stride 1, 2 or 3, blocks >= 0, expansion >= 1, "
                "reduction >= 0"
            )
        if f % stride:
            raise SpkverifError(f"redimnet stage {index}: {f} frequency bins do not divide by stride {stride}")
        c, f = c * stride, f // stride
        wide = c * expansion  # the blocks' convolutions have wide // divisor groups, the squeeze c // divisor
        if not all(groups >= 1 and channels_in % groups == 0 for channels_in, groups in
                   ((wide, wide // divisor), (c, c // divisor), (wide, c // divisor))):  # fmt: skip
            raise SpkverifError(
                f"redimnet stage {index}: {wide} and {c} channels cannot be split into groups by group_divisor "
                f"{divisor}"
            )
        if attention and reduction and (channels * bins // reduction) % _HEADS:
            raise SpkverifError(
                f"redimnet stage {index}: {channels * bins} / reduction {reduction} is not a multiple of {_HEADS} "
                "attention heads"
            )


@MODELS.register("redimnet")
@uses_frontend("redimnet_mel")
def build_redimnet(
    frontend: nn.Module,
    /,
    size: Annotated[str, OneOf(tuple(SIZES), "redimnet size")] = DEFAULT_SIZE,
    channels: Count | None = None,
    stages: list[list[int]] | None = None,
    block_2d: Annotated[str, OneOf(tuple(BLOCKS_2D), "redimnet 2-D block")] | None = None,
    block_1d: Annotated[str, OneOf(tuple(MIXERS_1D), "redimnet 1-D block")] | None = None,
    group_divisor: Count | None = None,
    global_context: bool | None = None,
    out_channels: Annotated[int, Range(ge=0)] = 0,
    embedding_dim: Count = 192,
    embedding_norm: bool = False,
) -> SpeakerEmbeddingModel:
    """ReDimNet (Yakovlev et al. 2024): 2-D and 1-D blocks on one reshaped volume, sizes b0-b6, 192-d.

    `size` picks one of the paper's sizes (B2: 4.89M); `channels`, `stages` ([stride, blocks,
    expansion, reduction] each), `block_2d`, `block_1d`, `group_divisor`, `global_context` replace
    its values. The size's mel bins are the front end's (`redimnet_mel`, 72; B0's paper has 60).
    """
    table = SIZES[size]
    encoder = ReDimNet(
        frontend.output_dim,
        channels or table.channels,
        tuple(tuple(int(v) for v in stage) for stage in stages) if stages is not None else table.stages,
        block_2d or table.block_2d,
        block_1d or table.block_1d,
        group_divisor or table.group_divisor,
        table.global_context if global_context is None else global_context,
        out_channels,
        embedding_dim,
        embedding_norm,
    )
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, 2, frontend.sample_rate)


__all__ = ["SIZES", "ReDimNet", "ReDimNetSize", "build_redimnet"]
