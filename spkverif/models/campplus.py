"""CAM++ (Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using
Context-Aware Masking", Interspeech 2023) on Kaldi fbank; the layout of 3D-Speaker's
`speakerlab/models/campplus/` (its `CAMPPlus` with `embedding_size: 192`), written anew.

- **FCM**, the front convolution module: the fbank (frames x 80 bins) as a one-channel
  image, a 3x3 convolution to 32 channels, two stages of two 2-D residual blocks whose
  first block halves the frequency axis (time kept), and a 3x3 convolution halving it once
  more: 32 channels x 10 bins, flattened to 320 channels a frame.
- A TDNN layer: 5-wide convolution to 128 channels with stride 2 (half the frame rate).
- Three densely connected TDNN (D-TDNN) blocks of 12, 24 and 16 layers (kernel 3,
  dilations 1, 2, 2). Each layer is BatchNorm, ReLU, a 1x1 convolution to 128 channels,
  BatchNorm, ReLU, then a context-aware masking (CAM) layer: a local 3-wide convolution to
  32 channels (the growth rate) multiplied by a sigmoid mask computed from the utterance's
  mean plus the mean of the frame's 100-frame segment (segment pooling); its output is
  concatenated to its input. After each block, a transit layer (BatchNorm, ReLU, 1x1
  convolution) halves the channels: 512 -> 256, 1024 -> 512, 1024 -> 512.
- BatchNorm, ReLU, mean+std statistics pooling over time, a linear layer without bias
  to the 192-d embedding and BatchNorm without affine parameters.

6.85M parameters at the defaults (192-d); `embedding_dim: 512`, 3D-Speaker's VoxCeleb model,
has 7.18M, the paper's and 3D-Speaker's published figure.

3D-Speaker's and WeSpeaker's CAM++ compute the same but for the pooled standard deviation:
`torch.std` (3D-Speaker's; here `unbiased_std: true, pooling_eps: 0`) and sqrt(unbiased
variance + 1e-7) (WeSpeaker's; `unbiased_std: true`). `spkverif import 3dspeaker` and
`spkverif import wespeaker` load their checkpoints with those options.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative
from spkverif.models.base import SpeakerEmbeddingModel, image_memory_format
from spkverif.models.pooling import StatisticsPooling
from spkverif.models.registry import MODELS, uses_frontend


def _norm_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU())


class FrequencyResBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut on (B, C, F, T); `stride` applies
    to frequency alone, so the frame rate is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=(stride, 1), padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.activation = nn.ReLU()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(image) + self.shortcut(image))


class FrontConvolution(nn.Module):
    """CAM++'s FCM: features (B, frames, bins) -> frames (B, channels x bins / 8, frames).

    >>> FrontConvolution(80, channels=4)(torch.randn(2, 30, 80)).shape
    torch.Size([2, 40, 30])
    """

    def __init__(self, input_dim: int, channels: int = 32, blocks: tuple[int, int] = (2, 2)):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        bins = input_dim
        for count in blocks:
            layers += [FrequencyResBlock(channels, channels, 2)]
            layers += [FrequencyResBlock(channels, channels) for _ in range(count - 1)]
            bins = (bins - 1) // 2 + 1
        layers += [
            nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        self.layers = nn.Sequential(*layers)
        self.output_dim = channels * ((bins - 1) // 2 + 1)
        self.to(memory_format=image_memory_format(channels))  # the 2-d weights; maps follow the weights' layout

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.layers(features.transpose(1, 2).unsqueeze(1))
        return maps.flatten(start_dim=1, end_dim=2)


def segment_means(frames: torch.Tensor, segment: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, T): every frame replaced by the mean of its segment, the frames
    [k * segment, (k + 1) * segment) (the last segment is the rest, however short).

    >>> segment_means(torch.arange(5.0).view(1, 1, 5), 2)
    tensor([[[0.5000, 0.5000, 2.5000, 2.5000, 4.0000]]])
    """
    frames_count = frames.shape[-1]
    means = functional.avg_pool1d(frames, segment, segment, ceil_mode=True)
    return means.repeat_interleave(segment, dim=-1)[..., :frames_count]


class ContextAwareMasking(nn.Module):
    """A local convolution scaled by a mask predicted from the utterance-level and
    segment-level means of its input: (B, in_channels, T) -> (B, out_channels, T)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, segment: int, reduction: int = 2
    ):
        super().__init__()
        self.segment = segment
        padding = dilation * (kernel_size - 1) // 2
        self.local = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.mask = nn.Sequential(
            nn.Conv1d(in_channels, in_channels // reduction, 1),
            nn.ReLU(),
            nn.Conv1d(in_channels // reduction, out_channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        context = frames.mean(dim=-1, keepdim=True) + segment_means(frames, self.segment)
        return self.local(frames) * self.mask(context)


class DenseTdnnLayer(nn.Module):
    """BatchNorm, ReLU, 1x1 convolution to `bottleneck` channels, BatchNorm, ReLU, CAM to `growth` channels."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int, segment: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm_relu(in_channels),
            nn.Conv1d(in_channels, bottleneck, 1, bias=False),
            _norm_relu(bottleneck),
            ContextAwareMasking(bottleneck, growth, kernel_size, dilation, segment),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(frames)


class DenseTdnnBlock(nn.Module):
    """`layers` D-TDNN layers, each given every earlier output: C -> C + layers x growth channels."""

    def __init__(
        self, layers: int, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int,
        segment: int,
    ):  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList(
            DenseTdnnLayer(in_channels + index * growth, growth, bottleneck, kernel_size, dilation, segment)
            for index in range(layers)
        )
        self.output_dim = in_channels + layers * growth

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            frames = torch.cat([frames, layer(frames)], dim=1)
        return frames


class CAMPlusPlus(nn.Module):
    """Features (B, frames, input_dim) -> embeddings (B, embedding_dim).

    >>> encoder = CAMPlusPlus(80, fcm_channels=4, tdnn_channels=16, growth_rate=4, bottleneck_ratio=2,
    ...                       block_layers=(2, 2, 2), embedding_dim=8)
    >>> encoder.eval()(torch.randn(2, 50, 80)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        input_dim: int,
        fcm_channels: int = 32,
        tdnn_channels: int = 128,
        growth_rate: int = 32,
        bottleneck_ratio: int = 4,
        block_layers: tuple[int, ...] = (12, 24, 16),
        dilations: tuple[int, ...] = (1, 2, 2),
        embedding_dim: int = 192,
        segment_frames: int = 100,
        unbiased_std: bool = False,
        pooling_eps: float | None = None,
    ):
        super().__init__()
        if len(block_layers) != len(dilations):
            raise SpkverifError(
                f"campplus block_layers {list(block_layers)} and dilations {list(dilations)} need one value per block"
            )
        self.front = FrontConvolution(input_dim, fcm_channels)
        layers: list[nn.Module] = [
            nn.Conv1d(self.front.output_dim, tdnn_channels, 5, stride=2, padding=2, bias=False),
            _norm_relu(tdnn_channels),
        ]
        channels = tdnn_channels
        for count, dilation in zip(block_layers, dilations, strict=True):
            block = DenseTdnnBlock(count, channels, growth_rate, bottleneck_ratio * growth_rate, 3, dilation,
                                   segment_frames)  # fmt: skip
            transit = nn.Sequential(_norm_relu(block.output_dim), nn.Conv1d(block.output_dim, block.output_dim // 2, 1,
                                                                            bias=False))  # fmt: skip
            layers += [block, transit]
            channels = block.output_dim // 2
        layers.append(_norm_relu(channels))
        self.frames = nn.Sequential(*layers)
        if pooling_eps is None:
            pooling_eps = 1e-7 if unbiased_std else 1e-5
        self.pooling = StatisticsPooling(channels, pooling_eps, unbiased_std)
        self.embedding = nn.Sequential(
            nn.Linear(self.pooling.output_dim, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim, affine=False),
        )
        for module in self.modules():  # as the paper's code initialises them
            if isinstance(module, nn.Conv1d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = self.frames(self.front(features))
        return self.embedding(self.pooling(frames))


@MODELS.register("campplus")
@uses_frontend("kaldi_fbank")
def build_campplus(
    frontend: nn.Module,
    /,
    fcm_channels: Count = 32,
    tdnn_channels: Count = 128,
    growth_rate: Count = 32,
    bottleneck_ratio: Count = 4,
    block_layers: list[int] | tuple[int, ...] = (12, 24, 16),
    dilations: list[int] | tuple[int, ...] = (1, 2, 2),
    embedding_dim: Count = 192,
    segment_frames: Count = 100,
    unbiased_std: bool = False,
    pooling_eps: NonNegative | None = None,
) -> SpeakerEmbeddingModel:
    """CAM++ (Wang et al. 2023): 2-D front convolutions, D-TDNN blocks with context-aware masking, 192-d.

    6.85M parameters; `embedding_dim: 512` (3D-Speaker's VoxCeleb model) has the paper's 7.18M.

    `segment_frames` counts frames after the TDNN layer's stride 2 (100: 2 s of audio).
    `unbiased_std: true` takes sqrt(unbiased variance + `pooling_eps`): WeSpeaker's CAM++ at the
    default 1e-7, 3D-Speaker's (`torch.std`) at 0; otherwise sqrt(max(variance, `pooling_eps`)),
    1e-5 by default.
    """
    encoder = CAMPlusPlus(
        frontend.output_dim, fcm_channels, tdnn_channels, growth_rate, bottleneck_ratio, tuple(block_layers),
        tuple(dilations), embedding_dim, segment_frames, unbiased_std, pooling_eps,
    )  # fmt: skip
    min_frames = 3 if unbiased_std else 1  # the unbiased variance needs 2 frames after the stride
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, min_frames, frontend.sample_rate)


__all__ = ["CAMPlusPlus", "build_campplus"]
