"""Temporal pooling shared by all embedding networks: frames (B, C, T) -> (B, 2C)."""

from __future__ import annotations

import torch
from torch import nn


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over time (Snyder et al. 2018).

    >>> StatisticsPooling(1500)(torch.randn(2, 1500, 30)).shape
    torch.Size([2, 3000])
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps

    @property
    def output_dim(self) -> int:
        return 2 * self.channels

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.float()
        mean = frames.mean(dim=-1)
        variance = (frames - mean.unsqueeze(-1)).pow(2).mean(dim=-1)
        return torch.cat([mean, variance.clamp_min(self.eps).sqrt()], dim=-1)
