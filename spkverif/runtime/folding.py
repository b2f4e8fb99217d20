"""BatchNorm folded into the convolution before it, for a network used for inference only.

In eval mode a BatchNorm is an affine map of each channel, y = (x - mean) g / sqrt(var + eps) + b,
so after a convolution it can be folded into that convolution's weights and bias (Ioffe and
Szegedy 2015, sec. 3.2; TorchScript's `torch.jit.freeze` and onnxruntime fold the same pairs):
one pass over the maps fewer per pair, the same embeddings up to float rounding. A pair is
folded only where the convolution's output cannot reach anything but the BatchNorm: a
`Conv1d` or `Conv2d` directly followed by a `BatchNorm1d` or `BatchNorm2d` with running
statistics inside a plain `nn.Sequential` (one whose forward is Sequential's own). The
BatchNorm becomes an `nn.Identity`; convolutions with a parametrisation (weight norm) are left.

What folding with channels-last weights (what `PytorchEmbedder.from_file` does on the CPU)
gains over the network as built: `python bench/profile_extract.py --freeze NETWORKS`, figures
in docs/benchmarks.md; networks whose BatchNorms follow a ReLU (x-vector, ECAPA-TDNN) have
nothing to fold.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _foldable(convolution: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(convolution, _CONVOLUTIONS)
        and isinstance(norm, _NORMS)
        and not parametrize.is_parametrized(convolution)
        and norm.running_mean is not None
        and norm.num_features == convolution.out_channels
        and not norm._forward_hooks
        and not norm._forward_pre_hooks
    )


@torch.no_grad()
def _fold(convolution: nn.Conv1d | nn.Conv2d, norm: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    weight = convolution.weight  # the product keeps its memory format (channels-last stays so)
    convolution.weight = nn.Parameter(weight * scale.reshape(-1, *(1,) * (weight.dim() - 1)), requires_grad=False)
    bias = shift if convolution.bias is None else convolution.bias * scale + shift
    convolution.bias = nn.Parameter(bias, requires_grad=False)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every foldable (convolution, BatchNorm) pair of `model` (module doc) in place and
    return how many were folded. `model` must be in eval mode and used for inference only:
    the folded network no longer trains as the original did (no batch statistics).

    >>> net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU()).eval()
    >>> fold_batchnorm(net), type(net[1]).__name__
    (1, 'Identity')
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    count = 0
    for sequence in model.modules():
        if not isinstance(sequence, nn.Sequential) or type(sequence).forward is not nn.Sequential.forward:
            continue
        for index in range(len(sequence) - 1):
            if _foldable(sequence[index], sequence[index + 1]):
                _fold(sequence[index], sequence[index + 1])
                sequence[index + 1] = nn.Identity()
                count += 1
    return count


def prepare_for_inference(model: nn.Module, channels_last: bool) -> nn.Module:
    """`model` (in eval mode) with its BatchNorms folded (`fold_batchnorm`) and, if `channels_last`,
    its 2-d weights channels-last (oneDNN and cuDNN then run 2-d convolutions without reordering
    their maps); in place, returned. For a model file opened for inference or exported."""
    fold_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


__all__ = ["fold_batchnorm", "prepare_for_inference"]
