"""What a registered network costs at its default options: parameters and multiply-adds.

`spkverif list models` shows both. The encoder is built on PyTorch's meta device (shapes,
no memory, no arithmetic), so even ResNet293 is counted in well under a second; the front
end, small, is built and run on the CPU. Multiply-adds are `FlopCounterMode`'s count
(matrix products and convolutions) divided by 2, for the front end on `SECONDS` of audio
and the encoder on `SECONDS` of its frames (200 frames of Kaldi fbank at 10 ms, the
convention of WeSpeaker's and 3D-Speaker's tables); element-wise operations, the FFT and
pooling are not counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from spkverif.frontends import build_frontend
from spkverif.models.base import count_parameters
from spkverif.models.registry import MODELS, default_frontend

SECONDS = 2.0
SAMPLE_RATE = 16000
_RATE_PROBE_SECONDS = 10.0  # frames a second, measured on a long input so edges do not count


@dataclass(frozen=True)
class ModelCost:
    parameters: int
    multiply_adds: int  # on SECONDS of audio


@functools.cache
def model_cost(name: str) -> ModelCost:
    """Parameters and multiply-adds for `SECONDS` of audio of model `name` at its default options
    (`SpkverifError` for an unknown name)."""
    frontend = build_frontend(default_frontend(name), {}, SAMPLE_RATE).eval()
    with torch.device("meta"):
        model = MODELS.build(name, frontend)
    model.eval()
    with torch.no_grad():
        probe = frontend(torch.zeros(1, round(_RATE_PROBE_SECONDS * SAMPLE_RATE)))
        frames = round(probe.shape[1] * SECONDS / _RATE_PROBE_SECONDS)
        with FlopCounterMode(display=False) as counter:
            frontend(torch.zeros(1, round(SECONDS * SAMPLE_RATE)))
            model.encoder(torch.zeros(1, frames, probe.shape[2], device="meta"))
    return ModelCost(count_parameters(model), counter.get_total_flops() // 2)


def si(value: float) -> str:
    """6634336 -> '6.63M', 4.55e9 -> '4.55G'."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f}{suffix}"
    return str(int(value))


__all__ = ["SECONDS", "ModelCost", "model_cost", "si"]
