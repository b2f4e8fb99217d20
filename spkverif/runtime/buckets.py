"""Length buckets for the 1-d convolutions of a network run on the CPU.

oneDNN, which runs PyTorch's CPU convolutions, builds a kernel for each new input
shape and caches them. A data set's utterances all differ in length, so extraction
pays that build for nearly every utterance: 13 ms of a 62 ms forward of ECAPA-TDNN
(C 512) on 6 s here (`python bench/profile_extract.py`). With buckets, each
zero-padded `Conv1d` runs on its input (B, C, T) padded with zeros at the end up to
a bucket of T, and its output is cropped back to what the unpadded input gives. The
appended zeros are what the convolution's own zero padding would have read there, so
every output kept is computed from the same numbers: the embeddings are unchanged
(tested on every registered network), the network meets 16 lengths a doubling of T
instead of every length, and the extra work is at most 1/16.

2-d convolutions (B, C, F, T) are left as they are: bucketed, on a new length each
call from 1.5 s to 30 s, ResNet34 ran 13-34% slower than plain (9-19% once channels-last)
and ERes2NetV2 6-18% slower; the copies of the larger 2-d activations cost more than the kernels saved
(`python bench/profile_extract.py --buckets resnet34 campplus "ecapa_tdnn c512"
eres2netv2`, 2 threads of a 2-core AMD EPYC). Convolutions with another padding mode
(reflect) or a string padding are left as they are too. Only what a model file opened
for inference runs is bucketed (`extract`, `verify`); training and export never are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

BUCKETS_PER_DOUBLING = 16  # a power of two
_SHIFT = BUCKETS_PER_DOUBLING.bit_length() - 1


def bucket(frames: int) -> int:
    """The smallest length >= `frames` that is a multiple of 2^(floor(log2 frames) - 4) (16
    buckets a doubling; lengths below 32 are their own bucket)."""
    step = 2 ** max(frames.bit_length() - 1 - _SHIFT, 0)
    return -(-frames // step) * step


def _pad(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    frames = inputs[0].shape[-1]
    layer._bucket_input_frames = frames
    extra = bucket(frames) - frames
    return (functional.pad(inputs[0], (0, extra)), *inputs[1:]) if extra else None


def _crop(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    kernel, dilation, stride, padding = layer.kernel_size[-1], layer.dilation[-1], layer.stride[-1], layer.padding[-1]
    frames = (layer._bucket_input_frames + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return output[..., :frames]


def bucket_convolutions(model: nn.Module) -> int:
    """Run every zero-padded `Conv1d` of `model` on length buckets (module doc); returns how
    many convolutions were bucketed (0 for a network of 2-d convolutions only). Meant for a
    model used for inference only: the hooks stay on the modules until `unbucket_convolutions`."""
    count = 0
    for layer in model.modules():
        if isinstance(layer, nn.Conv1d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
            unbucket_convolutions(layer)
            layer._bucket_hooks = (layer.register_forward_pre_hook(_pad), layer.register_forward_hook(_crop))
            count += 1
    return count


def unbucket_convolutions(model: nn.Module) -> None:
    """Take `bucket_convolutions`' hooks off every convolution of `model` (the network as built).

    Tracing needs this: a traced bucket's padding would be a constant of the traced length."""
    for layer in model.modules():
        for handle in layer.__dict__.pop("_bucket_hooks", ()):
            handle.remove()


__all__ = ["BUCKETS_PER_DOUBLING", "bucket", "bucket_convolutions", "unbucket_convolutions"]
