"""The model contract: waveforms (B, T) at `sample_rate` in, embeddings (B, D) out.

A model is a front end (features inside the forward pass) and an encoder; the
loss head lives apart (`spkverif.losses`), so any model trains with any loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class SpeakerEmbeddingModel(nn.Module):
    """Front end followed by an encoder; `spec` is enough to rebuild it."""

    def __init__(self, frontend: nn.Module, encoder: nn.Module, embedding_dim: int, min_frames: int, sample_rate: int):
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.embedding_dim = embedding_dim
        self.sample_rate = sample_rate
        self.min_frames = min_frames
        self.spec: dict[str, Any] = {}

    @property
    def min_samples(self) -> int:
        """Shortest input the network accepts; shorter audio is repeated up to this."""
        return self.frontend.samples_for_frames(self.min_frames)

    def forward(
        self, waveforms: torch.Tensor, feature_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Embeddings (B, D) of waveforms (B, T).

        `feature_transform`: the declared hook between front end and encoder, applied to
        the features (B, frames, bins) in the layout the front end gives them; training
        puts SpecAugment here (`spkverif.training.augment.SpecAugment`). Inference and
        export leave it None.
        """
        features = self.frontend(waveforms)
        if feature_transform is not None:
            features = feature_transform(features)
        return self.encoder(features)

    def embed_features(
        self, features: torch.Tensor, feature_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Embeddings (B, D) of features (B, frames, dims) computed ahead by the front end's `unnormalised`
        (training's `data.precompute_features`): the front end's `normalise`, the hook, then the encoder,
        as `forward` does after its own front end. Only for front ends that offer both methods (Kaldi's
        fbank); others raise AttributeError."""
        features = self.frontend.normalise(features)
        if feature_transform is not None:
            features = feature_transform(features)
        return self.encoder(features)


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def image_memory_format(base_channels: int) -> torch.memory_format:
    """The memory format of a 2-d network's weights and maps (B, C, F, T): channels-last from 16 base channels.

    Channels-last (NHWC): oneDNN's CPU convolutions then skip a layout reorder of every input
    and output (ResNet34's training step 1.13-1.22 times faster here, docs/benchmarks.md), and
    cuDNN's bf16 ones use their NHWC kernels. Not below 16 base channels: oneDNN's channels-last
    backward crashed (segmentation fault) at 4 and 8 here.
    """
    return torch.channels_last if base_channels >= 16 else torch.contiguous_format
