"""The limit column: floating-point operations counted per sample, and this machine's peak measured in the same run.

Operations are counted by `torch.utils.flop_counter.FlopCounterMode`, which
counts the matrix products and convolutions (forward and backward: `mm`,
`addmm`, `bmm`, `convolution`, `convolution_backward`, attention) at 2 FLOPs a
multiply-add, and nothing else: element-wise work, normalisation, the fbank's
FFT and the optimiser's update are real time but no counted operation, so the
achieved rate is a lower bound of the arithmetic done.

The peak is the best of a few timed calls of two kernels on the threads the
benchmark runs on: a large float32 matrix product (n × n by n × n, 2n³ FLOPs)
and a large 3 × 3 float32 convolution (its count from the same counter); the
fraction of peak divides by the larger of the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


def counted_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call of `function` as FlopCounterMode counts them (2 a multiply-add; see the module docstring)."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def forward_flops_per_second(network: torch.nn.Module, feat_dim: int, seconds: float) -> float:
    """Counted forward FLOPs of `network` on the fbank frames (25 ms every 10 ms) of one utterance of `seconds`,
    per second of audio; in eval mode, without gradients."""
    frames = int((seconds * 16000 - 400) // 160 + 1)
    features = torch.randn(1, frames, feat_dim)
    network.eval()
    with torch.no_grad():
        return counted_flops(lambda: network(features)) / seconds


@dataclass(frozen=True)
class Peak:
    """GFLOP/s of the two reference kernels, measured on `threads` threads."""

    gemm: float
    convolution: float
    threads: int
    gemm_size: int
    convolution_shape: str

    @property
    def best(self) -> float:
        return max(self.gemm, self.convolution)

    def describe(self) -> str:
        return (
            f"measured peak on {self.threads} threads: float32 GEMM {self.gemm_size} × {self.gemm_size} "
            f"{self.gemm:,.1f} GFLOP/s, float32 3 × 3 convolution {self.convolution_shape} "
            f"{self.convolution:,.1f} GFLOP/s; the fraction of peak divides by the larger"
        )


def _best_rate(function: Callable[[], object], flops: int, rounds: int) -> float:
    """GFLOP/s of the fastest of `rounds` calls after one untimed call."""
    function()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def measure_peak(gemm_size: int = 2048, channels: int = 128, image: int = 64, batch: int = 8, rounds: int = 5) -> Peak:
    """The machine's float32 peak on torch's current threads: a GEMM and a convolution, best of `rounds`.

    Defaults: a 2048 × 2048 product (17.2 GFLOP) and a 3 × 3 convolution of 8 × 128 × 64 × 64
    to 128 channels (9.7 GFLOP), each a fraction of a second on two cores.
    """
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(gemm_size, gemm_size, generator=generator)
    right = torch.randn(gemm_size, gemm_size, generator=generator)
    gemm = _best_rate(lambda: torch.mm(left, right), 2 * gemm_size**3, rounds)
    inputs = torch.randn(batch, channels, image, image, generator=generator)
    convolution = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).requires_grad_(False)
    flops = counted_flops(lambda: convolution(inputs))
    conv = _best_rate(lambda: convolution(inputs), flops, rounds)
    shape = f"{batch} × {channels} × {image} × {image} → {channels}"
    return Peak(gemm, conv, torch.get_num_threads(), gemm_size, shape)
