"""ECAPA-TDNN (Desplanques, Thienpondt & Demuynck, 2020) on Kaldi fbank.

A 5-wide convolution, three SE-Res2Net blocks with dilations 2, 3 and 4, their
outputs concatenated (multi-layer feature aggregation) and mixed by a 1x1
convolution into 1536 channels (the paper's width for C = 512 and C = 1024
alike), attentive statistics pooling with global context, BatchNorm, and a
linear layer whose output is the 192-d embedding. Every convolution is followed
by ReLU then BatchNorm, the order of the paper's reference implementation.

Options reproduce SpeechBrain's and WeSpeaker's variants exactly, for imported
checkpoints (`spkverif import speechbrain|wespeaker`): SpeechBrain's filterbank,
reflect padding, BatchNorm after the aggregation and inside the attention, pooling
epsilon 1e-12; WeSpeaker's Hamming-window fbank, the Res2Net group that passes
through taken last, and statistics from raw moments.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf, Positive
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.pooling import AttentiveStatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend


class ConvReluNorm(nn.Sequential):
    """Conv1d (padded to keep the length) -> ReLU -> BatchNorm."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, padding_mode: str = "zeros"
    ):
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding,
                      padding_mode=padding_mode),
            nn.ReLU(),
            nn.BatchNorm1d(out_channels),
        )  # fmt: skip


class Res2Convolution(nn.Module):
    """Res2Net's hierarchical convolution: channels split into `scale` groups; the
    first passes through, each later group is convolved after adding the previous
    group's output, so receptive fields grow group by group. `passthrough_last`
    convolves the first `scale - 1` groups and passes the last through (WeSpeaker's order)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        scale: int,
        padding_mode: str = "zeros",
        passthrough_last: bool = False,
    ):
        super().__init__()
        self.passthrough_last = passthrough_last
        if channels % scale:
            raise SpkverifError(f"ecapa_tdnn channels ({channels}) must be a multiple of scale ({scale})")
        self.width = channels // scale
        self.convolutions = nn.ModuleList(
            ConvReluNorm(self.width, self.width, kernel_size, dilation, padding_mode) for _ in range(scale - 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        groups = torch.split(features, self.width, dim=1)
        passthrough, convolved = (groups[-1], groups[:-1]) if self.passthrough_last else (groups[0], groups[1:])
        outputs = []
        previous = passthrough
        for index, (convolution, group) in enumerate(zip(self.convolutions, convolved, strict=True)):
            previous = convolution(group if index == 0 else group + previous)
            outputs.append(previous)
        outputs = [*outputs, passthrough] if self.passthrough_last else [passthrough, *outputs]
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

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        scale: int = 8,
        se_bottleneck: int = 128,
        padding_mode: str = "zeros",
        passthrough_last: bool = False,
    ):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluNorm(channels, channels),
            Res2Convolution(channels, kernel_size, dilation, scale, padding_mode, passthrough_last),
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
        padding_mode: str = "zeros",
        aggregate_norm: bool = False,
        attention_norm: bool = False,
        pooling_eps: float = 1e-5,
        res2_passthrough: str = "first",
        pooling_moments: str = "centred",
    ):
        super().__init__()
        if res2_passthrough not in ("first", "last"):
            raise SpkverifError(f"ecapa_tdnn res2_passthrough must be first or last, not {res2_passthrough!r}")
        last = res2_passthrough == "last"
        self.stem = ConvReluNorm(input_dim, channels, 5, 1, padding_mode)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, 3, dilation, scale, se_bottleneck, padding_mode, last) for dilation in (2, 3, 4)
        )
        aggregate = [nn.Conv1d(3 * channels, aggregate_channels, kernel_size=1), nn.ReLU()]
        self.aggregate = nn.Sequential(*aggregate, *([nn.BatchNorm1d(aggregate_channels)] if aggregate_norm else []))
        self.pooling = AttentiveStatisticsPooling(
            aggregate_channels, attention_bottleneck, global_context, pooling_eps, attention_norm, pooling_moments
        )
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
@uses_frontend("kaldi_fbank")
def build_ecapa_tdnn(
    frontend: nn.Module,
    /,
    channels: Count = 512,
    embedding_dim: Count = 192,
    scale: Count = 8,
    se_bottleneck: Count = 128,
    attention_bottleneck: Count = 128,
    global_context: bool = True,
    aggregate_channels: Count = 1536,
    padding_mode: Annotated[str, OneOf(("zeros", "reflect"), "padding mode")] = "zeros",
    aggregate_norm: bool = False,
    attention_norm: bool = False,
    pooling_eps: Positive = 1e-5,
    res2_passthrough: Annotated[str, OneOf(("first", "last"), "Res2Net passthrough")] = "first",
    pooling_moments: Annotated[str, OneOf(("centred", "raw"), "pooling moments")] = "centred",
) -> SpeakerEmbeddingModel:
    """ECAPA-TDNN, channels 512 (6.19M parameters) or 1024 (14.66M), 192-d embedding.

    `padding_mode`, `aggregate_norm`, `attention_norm`, `pooling_eps` give SpeechBrain's
    layout (`reflect`, true, true, 1e-12; reflect padding needs at least 5 frames) on
    its front end (`frontend: speechbrain_fbank`); `res2_passthrough: last`,
    `pooling_moments: raw`, `pooling_eps: 1e-7` give WeSpeaker's (`frontend: wespeaker_fbank`).
    """
    encoder = EcapaTDNN(
        frontend.output_dim,
        channels,
        embedding_dim,
        scale,
        se_bottleneck,
        attention_bottleneck,
        global_context,
        aggregate_channels,
        padding_mode,
        aggregate_norm,
        attention_norm,
        pooling_eps,
        res2_passthrough,
        pooling_moments,
    )
    min_frames = 5 if padding_mode == "reflect" else 1
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames, frontend.sample_rate)
