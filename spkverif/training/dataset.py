"""Turn sampled chunk requests into tensors, in data-loader workers if asked.

One iterable covers the whole run from a (epoch, step) position onwards, so
workers start once, not once an epoch. Each step is made of micro-batches
("parts"); a process builds the parts it owns (its rank's share, times gradient
accumulation), worker w taking items w, w+n, ..., which the loader's round-robin
hands back in order. Every random choice about a chunk — which audio, which
speed, which noise — is seeded by (seed, epoch, step, part, chunk), so any process
can build any micro-batch and get the same tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from spkverif.io.audio import AudioReader, PreloadedAudio
from spkverif.runtime.base import fit_length
from spkverif.training.augment import ChunkAugmenter, speed_perturb
from spkverif.training.features import PrecomputedFeatures
from spkverif.training.sampler import ChunkRequest, SpeakerChunkSampler


@dataclass
class Batch:
    """One micro-batch: `inputs` are waveforms (B, T), or features (B, frames, dims) where training
    precomputes them (`PrecomputedFeatures`); `labels` (B,) are class indices."""

    epoch: int
    step: int
    part: int
    inputs: torch.Tensor
    labels: torch.Tensor


class ChunkBatches(IterableDataset):
    def __init__(
        self,
        sampler: SpeakerChunkSampler,
        reader: AudioReader | PreloadedAudio,
        epochs: int,
        steps_per_epoch: int,
        start_epoch: int = 0,
        start_step: int = 0,
        parts: tuple[int, ...] = (0,),
        augmenter: ChunkAugmenter | None = None,
        features: PrecomputedFeatures | None = None,
    ):
        super().__init__()
        self.sampler = sampler
        self.reader = reader
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.start = start_epoch * steps_per_epoch + start_step
        self.parts = parts
        self.augmenter = augmenter
        self.features = features

    def items(self) -> list[tuple[int, int]]:
        return [
            (position, part)
            for position in range(self.start, self.epochs * self.steps_per_epoch)
            for part in self.parts
        ]

    def __len__(self) -> int:
        return len(self.items())

    def read_chunk(self, request: ChunkRequest, rng: np.random.Generator) -> np.ndarray:
        """The chunk's samples (T,), or its features (frames, dims) where they are precomputed."""
        length = request.samples
        utterance = self.sampler.index.utterances[request.utterance]
        if self.features is not None:  # checks.check_precomputable: no speed, no augmentation
            return self.features.chunk(utterance, request.offset, length)
        source = request.source_samples or length
        samples = fit_length(self.reader.read(utterance, request.offset, source), source)
        if request.speed != 1.0:
            samples = fit_length(speed_perturb(samples, request.speed, self.reader.sample_rate), length)
        if self.augmenter is not None and self.augmenter.active:
            samples = self.augmenter(samples, rng)
        return samples

    def load(self, position: int, part: int) -> Batch:
        epoch, step = divmod(position, self.steps_per_epoch)
        requests = self.sampler.batch(epoch, step, part)
        chunks = [
            self.read_chunk(request, np.random.default_rng([self.sampler.seed, epoch, step, part, number, 1]))
            for number, request in enumerate(requests)
        ]
        labels = np.array([request.label for request in requests], dtype=np.int64)
        return Batch(epoch, step, part, torch.from_numpy(np.stack(chunks)), torch.from_numpy(labels))

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        items = self.items()
        if worker is not None:
            items = items[worker.id :: worker.num_workers]
        for position, part in items:
            yield self.load(position, part)


def single_threaded_worker(worker_id: int) -> None:
    """Data-loader workers run single-threaded torch: the main process owns the cores."""
    torch.set_num_threads(1)
