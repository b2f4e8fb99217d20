"""Temporal pooling shared by all embedding networks: frames (B, C, T) -> (B, 2C)."""

from __future__ import annotations

import torch
from torch import nn


def mean_and_std(frames: torch.Tensor, weights: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Per-channel mean and standard deviation over time, (B, C, T) -> (B, 2C).

    `weights` (B, C, T), summing to one over time, makes them weighted statistics.
    The variance is the mean squared deviation, not E[x^2] - mean^2, which loses
    precision when the mean is large against the spread.
    """
    if weights is None:
        mean = frames.mean(dim=-1)
        variance = (frames - mean.unsqueeze(-1)).pow(2).mean(dim=-1)
    else:
        mean = (weights * frames).sum(dim=-1)
        variance = (weights * (frames - mean.unsqueeze(-1)).pow(2)).sum(dim=-1)
    return torch.cat([mean, variance.clamp_min(eps).sqrt()], dim=-1)


def mean_and_unbiased_std(frames: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(B, C, T) -> (B, 2C): mean and sqrt(unbiased variance + eps), WeSpeaker's TSTP formula;
    `eps` 0 is `torch.std`, 3D-Speaker's CAM++ statistics (its gradient is 0, not NaN, on a constant channel)."""
    std = torch.std(frames, dim=-1) if eps == 0 else torch.sqrt(torch.var(frames, dim=-1) + eps)
    return torch.cat([frames.mean(dim=-1), std], dim=-1)


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over time (Snyder et al. 2018).

    `unbiased`: the standard deviation is sqrt(var + eps) with the unbiased
    (T - 1) variance, as WeSpeaker's TSTP computes it (eps 1e-7; 3D-Speaker's
    ERes2Net 1e-8, its CAM++ 0); otherwise sqrt(max(var, eps)) with the mean
    squared deviation.

    >>> StatisticsPooling(1500)(torch.randn(2, 1500, 30)).shape
    torch.Size([2, 3000])
    """

    def __init__(self, channels: int, eps: float = 1e-5, unbiased: bool = False):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.unbiased = unbiased

    @property
    def output_dim(self) -> int:
        return 2 * self.channels

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.unbiased:
            return mean_and_unbiased_std(frames.float(), self.eps)
        return mean_and_std(frames.float(), eps=self.eps)


class AttentiveStatisticsPooling(nn.Module):
    """Mean and standard deviation under a learned attention over time, one per channel.

    Okabe et al. (2018), with the channel-dependent weights and global context of
    ECAPA-TDNN (Desplanques et al. 2020): the attention sees each frame beside the
    utterance's own mean and standard deviation, so it can weigh a frame by how it
    stands against the whole recording.

    `tanh: false` drops the tanh after the bottleneck: WeSpeaker's ASP (`pooling_layers.ASP`,
    SimAM-ResNet) has convolution, ReLU, BatchNorm, convolution, softmax.

    >>> pooling = AttentiveStatisticsPooling(64, bottleneck=16)
    >>> pooling(torch.randn(2, 64, 30)).shape
    torch.Size([2, 128])
    """

    def __init__(
        self,
        channels: int,
        bottleneck: int = 128,
        global_context: bool = True,
        eps: float = 1e-5,
        bottleneck_norm: bool = False,
        moments: str = "centred",
        tanh: bool = True,
    ):
        super().__init__()
        if moments not in ("centred", "raw"):
            raise ValueError(f"moments must be centred or raw, not {moments!r}")
        self.moments = moments
        self.channels = channels
        self.global_context = global_context
        self.eps = eps
        attention_input = 3 * channels if global_context else channels
        # bottleneck_norm: ReLU and BatchNorm before the tanh, as SpeechBrain's ECAPA-TDNN has them;
        # moments "raw": WeSpeaker's formulas for the statistics (see forward).
        norm = [nn.ReLU(), nn.BatchNorm1d(bottleneck)] if bottleneck_norm else []
        self.attention = nn.Sequential(
            nn.Conv1d(attention_input, bottleneck, kernel_size=1),
            *norm,
            *([nn.Tanh()] if tanh else []),
            nn.Conv1d(bottleneck, channels, kernel_size=1),
        )

    @property
    def output_dim(self) -> int:
        return 2 * self.channels

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.float()
        weights = torch.softmax(self._attention_logits(frames), dim=-1)
        if self.moments == "raw":
            # WeSpeaker's ASTP: var = E_w[x^2] - mean^2, floored at eps.
            mean = (weights * frames).sum(dim=-1)
            variance = (weights * frames.pow(2)).sum(dim=-1) - mean.pow(2)
            return torch.cat([mean, variance.clamp(min=self.eps).sqrt()], dim=-1)
        return mean_and_std(frames, weights, self.eps)

    def _attention_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T) before the softmax. With global context the first
        convolution sees [frames; mean; std], whose last 2C rows are the same at every
        frame: their product with the weight is taken once per utterance, (B, 2C) ->
        (B, bottleneck), and added to the frames' own product. The same function as
        convolving the concatenation, with a third of its multiply-adds and without the
        (B, 3C, T) copy; the parameters keep the (bottleneck, 3C, 1) layout of checkpoints."""
        if not self.global_context:
            return self.attention(frames)
        first, rest = self.attention[0], self.attention[1:]
        per_frame = nn.functional.conv1d(frames, first.weight[:, : self.channels])
        per_utterance = nn.functional.linear(self._context(frames), first.weight[:, self.channels :, 0], first.bias)
        return rest(per_frame + per_utterance.unsqueeze(-1))

    def _context(self, frames: torch.Tensor) -> torch.Tensor:
        if self.moments == "raw":
            # WeSpeaker's global context: the unbiased variance plus eps.
            return mean_and_unbiased_std(frames, self.eps)
        return mean_and_std(frames, eps=self.eps)
