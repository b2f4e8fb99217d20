"""A peer's checkpoint, randomly initialised, from its keys, shapes and a seed: bit for bit on any machine.

The reference files of `tests/test_import_3dspeaker.py` keep a peer network's key names and
shapes (a few KB) instead of its weights: the weights are made again from a seed by a
counter-based generator of our own (SplitMix64 on NumPy's unsigned 64-bit integers, exact
and wrapping), each value a 24-bit fraction moved into its range by float32 operations that
IEEE 754 defines exactly, so the checkpoint the peer's code embedded at the making
(`tests/data/make_3dspeaker_reference.py`) is the one a test writes, on any machine and
NumPy or torch version. `digest` fingerprints it, and the test checks that too.

- BatchNorm running variances and 1-D weights (BatchNorm scales): uniform in [0.5, 1.5);
- running means and biases: uniform in [-0.5, 0.5);
- weights of 2 or more dimensions (convolutions, linear layers): uniform in [-s, s), s the power
  of two with s x sqrt(fan-in) in [1, 2): torch's default initialisation (s = 1 / sqrt(fan-in))
  to twice it. Hotter weights amplify float32's rounding in the quietest fbank bins (where
  pre-emphasis leaves little energy, ours and torchaudio's are each about 2e-4 off float64)
  past 1e-5 in the embeddings of deep random networks: a parity test would measure noise;
- integer tensors (BatchNorm's `num_batches_tracked`): 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, stream: int, count: int) -> np.ndarray:
    """`count` float32 values k / 2^24 in [0, 1), stream `stream` of `seed`."""
    key = _splitmix64(np.array([seed * (1 << 32) + stream], dtype=np.uint64))
    bits = _splitmix64(key + np.arange(count, dtype=np.uint64))
    return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def _scale(shape: Sequence[int]) -> np.float32:
    fan_in = int(np.prod(shape[1:]))
    return np.float32(2.0 ** -((fan_in.bit_length() - 1) // 2))


def seeded_state(keys: Sequence[str], shapes: Sequence[Sequence[int]], dtypes: Sequence[str], seed: int,
                 gain: int = 1) -> dict[str, torch.Tensor]:  # fmt: skip
    """The state_dict of `keys` with `shapes` and `dtypes` ("float32", "int64") from `seed` (module docstring);
    `gain`, a power of two, multiplies the weights' range (2: hot enough that ERes2Net's clipped ReLU acts)."""
    if gain < 1 or gain & (gain - 1):
        raise ValueError(f"gain must be a power of two, not {gain}")
    state = {}
    for stream, (key, shape, dtype) in enumerate(zip(keys, shapes, dtypes, strict=True)):
        shape = tuple(int(size) for size in shape)
        if dtype != "float32":
            state[str(key)] = torch.zeros(shape, dtype=getattr(torch, str(dtype)))
            continue
        u = uniform(seed, stream, int(np.prod(shape, dtype=np.int64))).reshape(shape)
        if key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1):
            values = np.float32(0.5) + u
        elif key.endswith(("running_mean", "bias")):
            values = u - np.float32(0.5)
        else:
            values = (np.float32(2.0) * u - np.float32(1.0)) * (_scale(shape) * np.float32(gain))
        state[str(key)] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    return state


def seeded_features(seed: int, shape: Sequence[int]) -> torch.Tensor:
    """Features (B, frames, bins) uniform in [-4, 4), about the range of mean-normalised log-mel, from `seed`."""
    count = int(np.prod(shape, dtype=np.int64))
    values = (np.float32(2.0) * uniform(seed, 0, count) - np.float32(1.0)) * np.float32(4.0)
    return torch.from_numpy(values.reshape(tuple(shape)))


def manifest(state: dict[str, torch.Tensor]) -> tuple[list[str], list[list[int]], list[str]]:
    """A state_dict's keys, shapes and dtypes, in its order: what `seeded_state` needs."""
    keys = list(state)
    dtypes = [str(state[key].dtype).removeprefix("torch.") for key in keys]
    return keys, [list(state[key].shape) for key in keys], dtypes


def digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the keys, dtypes, shapes and bytes of a state_dict, in its order."""
    hasher = hashlib.sha256()
    for key, tensor in state.items():
        hasher.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()
