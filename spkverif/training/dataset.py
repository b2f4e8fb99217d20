"""Turn sampled chunk requests into tensors, in data-loader workers if asked.

One iterable covers the whole run from a (epoch, step) position onwards, so
workers start once, not once an epoch; worker w builds steps w, w+n, w+2n, ...
and the loader's round-robin hands them back in step order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from spkverif.io.audio import AudioReader
from spkverif.training.sampler import SpeakerChunkSampler


@dataclass
class Batch:
    epoch: int
    step: int
    waveforms: torch.Tensor
    labels: torch.Tensor


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop, or repeat a short utterance until it fills `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    if len(samples) == 0:
        return np.zeros(length, dtype=np.float32)
    repeats = -(-length // len(samples))
    return np.tile(samples, repeats)[:length]


class ChunkBatches(IterableDataset):
    def __init__(
        self,
        sampler: SpeakerChunkSampler,
        reader: AudioReader,
        epochs: int,
        steps_per_epoch: int,
        start_epoch: int = 0,
        start_step: int = 0,
    ):
        super().__init__()
        self.sampler = sampler
        self.reader = reader
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.start = start_epoch * steps_per_epoch + start_step

    def positions(self) -> range:
        return range(self.start, self.epochs * self.steps_per_epoch)

    def __len__(self) -> int:
        return len(self.positions())

    def load(self, position: int) -> Batch:
        epoch, step = divmod(position, self.steps_per_epoch)
        requests = self.sampler.batch(epoch, step)
        length = self.sampler.chunk_samples
        waveforms = np.stack(
            [
                fit_length(self.reader.read(self.sampler.index.utterances[r.utterance], r.offset, length), length)
                for r in requests
            ]
        )
        labels = np.array([r.label for r in requests], dtype=np.int64)
        return Batch(epoch, step, torch.from_numpy(waveforms), torch.from_numpy(labels))

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        positions = self.positions()
        if worker is not None:
            positions = positions[worker.id :: worker.num_workers]
        for position in positions:
            yield self.load(position)
