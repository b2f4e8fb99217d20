"""ReDimNet2 (Yakovlev and Okhotnikov, "ReDimNet2: Scaling Speaker Verification via Time-Pooled
Dimension Reshaping", Interspeech 2026, arXiv:2603.11841; code: github.com/PalabraAI/redimnet2,
`redimnet2/redimnet2.py`, `ReDimNet2Wrap`) on its own log-mel front end (`redimnet2_mel`), written
anew so `spkverif import redimnet2` loads the released checkpoints.

What changed from ReDimNet (`spkverif.models.redimnet`, whose stem, mixing weights, 2-D blocks and
1-D blocks are reused here as they are):

- Time pooling. A stage row is (frequency stride, time stride, blocks, expansion, reduction). The
  time strides multiply along the stages; a stage's strided convolution (kernel = stride =
  (frequency stride, product of the time strides so far), groups gcd(c, c')) pools time as well
  as frequency, so its 2-D and 1-D blocks run on T / s frames, and its output is repeated s times
  along time (nearest upsampling) before it joins the weighted sums at the full T frames. The
  input is cut to a multiple of the largest product.
- Expansion may be a fraction (B6: 0.75, 0.5); the squeeze back to c channels is a 1x1
  convolution and BatchNorm (eps 1e-6) instead of ReDimNet's 3x3 / GELU / 1x1.
- `group_norm` (IDRnD's `agg_gnorm`, on in the released recipes): a GroupNorm with C groups on
  the stem's and every stage's output (C * F frame channels).
- `dual_outputs` (`dual_agg`, the B6 "vb2+vox2_v0" release): a stage with a 1-D block yields two
  outputs, the frames before it and after it, each upsampled and normalised on its own.
- `maps_head` (`return_2d_output`, on in the released recipes): the weighted sum is viewed as
  the last stage's maps (c, f), given an optional 1x1 convolution to `out_channels`, and
  flattened channel-major (c * f) for pooling; off, a 1x1 Conv1d on the C * F frames.

Pooling (ECAPA's attentive statistics with global context, raw moments), BatchNorm, the linear
embedding and the optional BatchNorm after it are ReDimNet's. Not built (none of the released
checkpoints uses them): causal modes, subnet mode, the `v2_` (RoPE) and `sdwm_` 1-D blocks,
frequency position embeddings, uncompressed (ungrouped) strided convolutions, 2-D kernels other
than 3x3, ungrouped (`group_divisor: None`) blocks.

Features (B, T, F) -> embeddings (B, embedding_dim). Sizes (`size`; 72 mel bins, 192-d, the
configurations of the released recipes, `applications/speaker_rec/examples/vox2/recipes/redimnet2/
b3|b6/ptn.yaml`; the other sizes' configurations are only inside their release files, which
`spkverif import redimnet2` reads): B3 4,204,040 parameters (IDRnD's README: 4.1M), B6 12,454,688
(12.3M). IDRnD's code counts 1,728 and 4,608 more: stage 0's constant mixing weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf, Range
from spkverif.models.base import SpeakerEmbeddingModel, image_memory_format
from spkverif.models.pooling import AttentiveStatisticsPooling
from spkverif.models.redimnet import (
    _HEADS,
    _NORM_EPS,
    _POOLING_BOTTLENECK,
    _POOLING_EPS,
    BLOCKS_2D,
    MIXERS_1D,
    ChannelNorm,
    LayerMix,
    TimeContext,
    ToFrames,
    ToMaps,
)
from spkverif.models.registry import MODELS, uses_frontend

Stage = tuple[int, int, int, float, int]  # frequency stride, time stride, 2-D blocks, expansion, 1-D reduction


@dataclass(frozen=True)
class ReDimNet2Size:
    """One size: C, the stages (frequency stride, time stride, 2-D blocks, expansion, 1-D block
    reduction or 0 for none) and the 1x1 head's channels (0: none)."""

    channels: int
    stages: tuple[Stage, ...]
    out_channels: int = 0


SIZES = {
    "b3": ReDimNet2Size(24, ((1, 1, 2, 4, 24), (2, 1, 3, 3, 24), (1, 2, 4, 2, 24), (2, 1, 5, 1, 24),
                             (1, 2, 4, 1, 24), (2, 1, 3, 1, 24))),
    "b6": ReDimNet2Size(64, ((1, 1, 3, 3, 64), (2, 1, 4, 2, 64), (1, 2, 5, 2, 48), (2, 1, 5, 1, 48),
                             (1, 2, 4, 0.75, 32), (2, 1, 3, 0.5, 24)), out_channels=224),
}  # fmt: skip
DEFAULT_SIZE = "b3"
MIN_POOLED_FRAMES = 2  # frames at the coarsest time resolution the shortest input gives


class TimeUpsample(nn.Module):
    """Each frame of (B, C, T) repeated `factor` times: (B, C, T * factor) (nearest upsampling)."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        return x.unsqueeze(-1).expand(*x.shape, self.factor).flatten(-2)


def _output_norm(group_norm: bool, channels: int, width: int) -> nn.Module:
    return nn.GroupNorm(channels, width) if group_norm else nn.Identity()


class ReDimNet2Stage(nn.Module):
    """The weighted sum of the earlier outputs (B, C * F, T), then `body` (to maps, strided convolution,
    2-D blocks, [squeeze], to frames, and without `context`: [1-D block], upsampling, [GroupNorm]).
    With `context` (dual outputs): [upsampled body output, upsampled 1-D block output], each normalised."""

    def __init__(self, inputs: int, width: int, body: list[nn.Module], context: nn.Module | None = None,
                 outputs: tuple[nn.Module, nn.Module] | None = None):  # fmt: skip
        super().__init__()
        self.mix = LayerMix(inputs, width) if inputs > 1 else None
        self.body = nn.Sequential(*body)
        self.context = context
        self.maps_out, self.context_out = outputs if outputs is not None else (None, None)

    def forward(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.body(outputs[0] if self.mix is None else self.mix(outputs))
        if self.context is None or self.maps_out is None or self.context_out is None:
            return [x]
        return [self.maps_out(x), self.context_out(self.context(x))]


class ReDimNet2(nn.Module):
    """Features (B, T, input_dim) -> embeddings (B, embedding_dim) (module doc).

    `stages`: one (frequency stride, time stride, blocks, expansion, reduction) per stage; reduction 0
    is no 1-D block. `time_stride`: the product of the time strides (T is cut to a multiple of it).

    >>> encoder = ReDimNet2(12, channels=2, stages=((1, 1, 1, 2, 3), (2, 2, 1, 0.5, 0), (3, 2, 1, 1, 6)),
    ...                     out_channels=4, dual_outputs=True, embedding_dim=8)
    >>> encoder.eval()(torch.randn(2, 30, 12)).shape
    torch.Size([2, 8])
    """

    DEFAULT_BLOCK_2D = "basic_resnet"

    def __init__(
        self,
        input_dim: int,
        channels: int,
        stages: tuple[Stage, ...],
        block_2d: str = DEFAULT_BLOCK_2D,
        block_1d: str = "conv+att",
        group_divisor: int = 1,
        group_norm: bool = True,
        dual_outputs: bool = False,
        maps_head: bool = True,
        out_channels: int = 0,
        global_context: bool = True,
        embedding_dim: int = 192,
        embedding_norm: bool = False,
    ):
        super().__init__()
        width = channels * input_dim
        _check_shapes(input_dim, channels, stages, group_divisor, attention="att" in block_1d)
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), ChannelNorm(channels), ToFrames())
        self.stem_norm = _output_norm(group_norm, channels, width)
        self.stages = nn.ModuleList()
        c, f, time_stride, count = channels, input_dim, 1, 1
        for freq_stride, stride, blocks, expansion, reduction in stages:
            time_stride *= stride
            wide = int(freq_stride * c * expansion)
            body: list[nn.Module] = [
                ToMaps(c, f),
                nn.Conv2d(c, wide, (freq_stride, time_stride), stride=(freq_stride, time_stride),
                          groups=math.gcd(c, wide)),
            ]  # fmt: skip
            c, f = freq_stride * c, f // freq_stride
            body += [BLOCKS_2D[block_2d](wide, f, group_divisor) for _ in range(blocks)]
            if expansion != 1:
                body.append(nn.Sequential(nn.Conv2d(wide, c, 1), nn.BatchNorm2d(c, eps=_NORM_EPS)))
            body.append(ToFrames())
            context = TimeContext(width, width // reduction, block_1d) if reduction else None
            if dual_outputs and context is not None:
                outputs = tuple(
                    nn.Sequential(TimeUpsample(time_stride), _output_norm(group_norm, channels, width)) for _ in "12"
                )
                self.stages.append(ReDimNet2Stage(count, width, body, context, outputs))
                count += 2
            else:
                body += [*([context] if context else []), TimeUpsample(time_stride)]
                body.append(_output_norm(group_norm, channels, width))
                self.stages.append(ReDimNet2Stage(count, width, body))
                count += 1
        self.time_stride = time_stride
        self.mix = LayerMix(count, width)
        self.head_maps = ToMaps(c, f) if maps_head else None
        self.head: nn.Module = nn.Identity()
        if out_channels:
            self.head = nn.Conv2d(c, out_channels, 1) if maps_head else nn.Conv1d(width, out_channels, 1)
        pooled = out_channels * (f if maps_head else 1) or width
        self.pooling = AttentiveStatisticsPooling(
            pooled, _POOLING_BOTTLENECK, global_context, eps=_POOLING_EPS, moments="raw"
        )
        self.pooling_norm = nn.BatchNorm1d(self.pooling.output_dim)
        self.embedding = nn.Linear(self.pooling.output_dim, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim) if embedding_norm else nn.Identity()
        self.to(memory_format=image_memory_format(channels))  # as ReDimNet's

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = features.shape[1] // self.time_stride * self.time_stride
        outputs = [self.stem_norm(self.stem(features[:, :frames].transpose(1, 2).unsqueeze(1)))]
        for stage in self.stages:
            outputs.extend(stage(outputs))
        x = self.mix(outputs)
        x = self.head(x) if self.head_maps is None else self.head(self.head_maps(x)).flatten(1, 2)
        return self.embedding_norm(self.embedding(self.pooling_norm(self.pooling(x))))


def _check_shapes(bins: int, channels: int, stages: tuple[Stage, ...], divisor: int, attention: bool) -> None:
    """One line for a stage table the network cannot be built from (SpkverifError); `attention`: the 1-D
    blocks have attention heads, which need their width to divide among them."""
    if not stages:
        raise SpkverifError("redimnet2 needs at least one stage")
    c, f = channels, bins
    for index, stage in enumerate(stages):
        if len(stage) != 5:
            raise SpkverifError(
                f"redimnet2 stage {index}: {list(stage)} is not [frequency stride, time stride, blocks, expansion, "
                "reduction]"
            )
        freq_stride, time_stride, blocks, expansion, reduction = stage
        if freq_stride not in (1, 2, 3) or time_stride < 1 or blocks < 0 or expansion <= 0 or reduction < 0:
            raise SpkverifError(
                f"redimnet2 stage {index}: {list(stage)} needs frequency stride 1, 2 or 3, time stride >= 1, "
                "blocks >= 0, expansion > 0, reduction >= 0"
            )
        if f % freq_stride:
            raise SpkverifError(f"redimnet2 stage {index}: {f} frequency bins do not divide by stride {freq_stride}")
        wide = int(freq_stride * c * expansion)
        c, f = c * freq_stride, f // freq_stride
        if wide < 1 or (blocks and (wide // divisor < 1 or wide % (wide // divisor))):
            raise SpkverifError(
                f"redimnet2 stage {index}: {wide} channels cannot be split into groups by group_divisor {divisor}"
            )
        if attention and reduction and (channels * bins // reduction) % _HEADS:
            raise SpkverifError(
                f"redimnet2 stage {index}: {channels * bins} / reduction {reduction} is not a multiple of {_HEADS} "
                "attention heads"
            )


@MODELS.register("redimnet2")
@uses_frontend("redimnet2_mel")
def build_redimnet2(
    frontend: nn.Module,
    /,
    size: Annotated[str, OneOf(tuple(SIZES), "redimnet2 size")] = DEFAULT_SIZE,
    channels: Count | None = None,
    stages: list[list[float]] | None = None,
    out_channels: Annotated[int, Range(ge=0)] | None = None,
    block_2d: Annotated[str, OneOf(tuple(BLOCKS_2D), "redimnet2 2-D block")] | None = None,
    block_1d: Annotated[str, OneOf(tuple(MIXERS_1D), "redimnet2 1-D block")] = "conv+att",
    group_divisor: Count = 1,
    group_norm: bool = True,
    dual_outputs: bool = False,
    maps_head: bool = True,
    global_context: bool = True,
    embedding_dim: Count = 192,
    embedding_norm: bool = False,
) -> SpeakerEmbeddingModel:
    """ReDimNet2 (Yakovlev, Okhotnikov 2026): ReDimNet pooling time in its stages, b3, b6, 192-d.

    `size` picks a released recipe's size (B3: 4.20M); `channels`, `stages` ([frequency stride, time
    stride, blocks, expansion, reduction] each) and `out_channels` replace its values (`block_2d` None:
    `basic_resnet`). The other options
    are the released recipes' (`group_norm`: IDRnD's agg_gnorm; `dual_outputs`: dual_agg; `maps_head`:
    return_2d_output). Mel bins are the front end's (`redimnet2_mel`, 72).
    """
    table = SIZES[size]
    rows = table.stages if stages is None else tuple(_stage_row(row) for row in stages)
    encoder = ReDimNet2(
        frontend.output_dim,
        channels or table.channels,
        rows,
        block_2d or ReDimNet2.DEFAULT_BLOCK_2D,
        block_1d,
        group_divisor,
        group_norm,
        dual_outputs,
        maps_head,
        table.out_channels if out_channels is None else out_channels,
        global_context,
        embedding_dim,
        embedding_norm,
    )
    min_frames = MIN_POOLED_FRAMES * encoder.time_stride
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames, frontend.sample_rate)


def _stage_row(row: list[float]) -> Stage:
    """[frequency stride, time stride, blocks, expansion, reduction] with integer counts (a wrong length is
    `_check_shapes`'s one line)."""
    values = list(row)
    if len(values) != 5:
        return tuple(values)  # type: ignore[return-value]
    freq_stride, time_stride, blocks, expansion, reduction = values
    whole = float(expansion).is_integer()
    return (
        int(freq_stride),
        int(time_stride),
        int(blocks),
        int(expansion) if whole else float(expansion),
        int(reduction),
    )


__all__ = ["SIZES", "ReDimNet2", "ReDimNet2Size", "ReDimNet2Stage", "TimeUpsample", "build_redimnet2"]
