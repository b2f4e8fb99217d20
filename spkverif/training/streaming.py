"""Training batches read streaming from tar shards (`spkverif shard`), with a shuffle buffer.

Reader streams. Each (rank, data-loader worker) pair is one stream, `rank * W + worker`
of `world_size * W`. In pass p over the data, the shards are permuted by (seed, p) and
stream s reads shards s, s + S, s + 2S, ... of that order, so streams are disjoint and
together read every shard once a pass. A stream takes one random chunk of every
utterance it reads (with a random speed under speed perturbation), passes it through a
shuffle buffer of `buffer_size` chunks, and empties the buffer in a random order at the
end of the pass. Batches are consecutive chunks of a stream. Every random draw comes
from generators seeded by (seed, S, s, p) and, for augmentation, by the chunk's place in
the pass, as WebDataset's and WeSpeaker's shard readers do, but seeded.

What this keeps of the trainer's promises: with the same seed, shards, world size,
grad_accum and num_workers, a run repeats exactly, and a resumed run sees bit for bit
the batches the interrupted one would have (each stream skips whole passes by the
counts in shards.list, then re-reads its current pass up to where it stopped, without
decoding chunks it skips into augmentation). What it relaxes:
- batches are not P speakers x K chunks: a batch holds `speakers_per_batch x
  utts_per_speaker` chunks of whatever speakers the buffer gives (losses that need K >= 2
  chunks of a speaker cannot use shards);
- every utterance gives one chunk a pass, instead of utterances drawn with replacement;
- the batches depend on world_size x num_workers (the number of streams): changing the
  GPU count or --num-workers changes the data order, and --grad-accum N no longer
  equals N torchrun processes;
- a resume re-reads up to one pass of each stream's shards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from spkverif.base.errors import SpkverifError
from spkverif.io.shards import Shard, iter_shard
from spkverif.training.augment import ChunkAugmenter, speed_perturb
from spkverif.training.dataset import Batch, fit_length
from spkverif.training.sampler import ChunkLengths


@dataclass(frozen=True)
class _Chunk:
    label: int
    samples: np.ndarray  # int16, the source stretch before speed perturbation
    speed: float


def check_streams(shards: list[Shard], streams: int) -> None:
    """Refuse fewer shards than reader streams (world_size x num_workers): a stream would have none."""
    if len(shards) < streams:
        raise SpkverifError(
            f"{len(shards)} shard(s) for {streams} reader streams (GPUs x data-loader workers): "
            "write smaller shards (spkverif shard --shard-size) or use fewer workers"
        )


class ShardChunks(IterableDataset):
    """Batches (Batch, waveforms (B, chunk_samples) float32, labels (B,) int64) from shards.

    `chunk_samples` is one length, or `ChunkLengths` (a length drawn for each step: a chunk is cut
    at the longest length and shortened to its step's). `labels` maps an utterance to its
    speaker's integer label (0..num_speakers-1); with
    speed perturbation the class is `label + speed_index * num_speakers`, as in
    SpeakerChunkSampler. The run's positions are those of ChunkBatches: (epoch, step)
    from the start position on, `parts` micro-batches a step.
    """

    def __init__(
        self,
        shards: list[Shard],
        labels: dict[str, int],
        num_speakers: int,
        chunk_samples: int | ChunkLengths,
        batch_size: int,
        seed: int,
        steps: tuple[int, int, int, int] = (1, 1 << 40, 0, 0),
        parts: tuple[int, ...] = (0,),
        speeds: tuple[float, ...] = (1.0,),
        augmenter: ChunkAugmenter | None = None,
        buffer_size: int = 1000,
        rank: tuple[int, int] = (0, 1),
        sample_rate: int = 16000,
    ):
        super().__init__()
        self.shards = shards
        self.labels = labels
        self.num_speakers = num_speakers
        self.lengths = ChunkLengths.of(chunk_samples)
        self.batch_size = batch_size
        self.seed = seed
        self.epochs, self.steps_per_epoch, start_epoch, start_step = steps
        self.start = start_epoch * self.steps_per_epoch + start_step
        self.parts = parts
        self.speeds = speeds
        self.augmenter = augmenter
        self.buffer_size = max(1, buffer_size)
        self.rank, self.world_size = rank
        self.sample_rate = sample_rate

    def _mine(self, stream: int, streams: int, number: int) -> list[Shard]:
        order = np.random.default_rng([self.seed, number]).permutation(len(self.shards))
        return [self.shards[i] for i in order[stream::streams]]

    def chunks(self, stream: int, streams: int, skip: int = 0) -> Iterator[tuple[int, int, _Chunk]]:
        """(pass, place in the pass, chunk) of one stream, endlessly, after `skip` chunks."""
        first = 0
        while skip >= (count := sum(shard.utterances for shard in self._mine(stream, streams, first))):
            skip -= count
            first += 1
        for number in itertools.count(first):
            for place, chunk in self._pass(stream, streams, number):
                if skip > 0:
                    skip -= 1
                    continue
                yield number, place, chunk

    def _pass(self, stream: int, streams: int, number: int) -> Iterator[tuple[int, _Chunk]]:
        rng = np.random.default_rng([self.seed, streams, stream, number])
        buffer: list[_Chunk] = []
        place = 0
        for shard in self._mine(stream, streams, number):
            for utt, samples in iter_shard(shard.path, shard.utterances):
                buffer.append(self._draw(utt, samples, rng, shard))
                if len(buffer) >= self.buffer_size:
                    pick = int(rng.integers(len(buffer)))
                    buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                    yield place, buffer.pop()
                    place += 1
        for pick in rng.permutation(len(buffer)):
            yield place, buffer[pick]
            place += 1

    def _draw(self, utt: str, samples: np.ndarray, rng: np.random.Generator, shard: Shard) -> _Chunk:
        if utt not in self.labels:
            raise SpkverifError(f"utterance {utt!r} of the shard is not in the data directory's utt2spk", shard.path)
        speed_index = int(rng.integers(len(self.speeds))) if len(self.speeds) > 1 else 0
        source = round(self.lengths.most * self.speeds[speed_index])
        spare = len(samples) - source
        offset = int(rng.integers(0, spare + 1)) if spare > 0 else 0
        label = self.labels[utt] + speed_index * self.num_speakers
        return _Chunk(label, samples[offset : offset + source].copy(), self.speeds[speed_index])

    def materialise(self, stream: int, streams: int, number: int, place: int, chunk: _Chunk, length: int) -> np.ndarray:
        """The chunk as float32 (length,): its first `length` samples (at its speed), speed perturbed, then
        augmented."""
        source = round(length * chunk.speed)
        samples = fit_length(chunk.samples[:source].astype(np.float32) / 32768.0, source)
        if chunk.speed != 1.0:
            samples = fit_length(speed_perturb(samples, chunk.speed, self.sample_rate), length)
        if self.augmenter is not None and self.augmenter.active:
            rng = np.random.default_rng([self.seed, streams, stream, number, place, 1])
            samples = self.augmenter(samples, rng)
        return samples

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        streams = self.world_size * workers
        check_streams(self.shards, streams)
        first = self.start * len(self.parts)
        last = self.epochs * self.steps_per_epoch * len(self.parts)
        # The loader hands items round-robin from worker 0 on; item i is always read by
        # stream (i mod workers) of this rank, whatever position the run starts from.
        local = (first + worker_id) % workers
        stream = self.rank * workers + local
        done = len(range(local, first, workers))
        chunks = self.chunks(stream, streams, done * self.batch_size)
        for item in range(first + worker_id, last, workers):
            position, part_index = divmod(item, len(self.parts))
            epoch, step = divmod(position, self.steps_per_epoch)
            taken = [next(chunks) for _ in range(self.batch_size)]
            length = self.lengths.draw(self.seed, epoch, step)
            waveforms = [self.materialise(stream, streams, n, place, chunk, length) for n, place, chunk in taken]
            labels = np.array([chunk.label for _, _, chunk in taken], dtype=np.int64)
            yield Batch(
                epoch, step, self.parts[part_index], torch.from_numpy(np.stack(waveforms)), torch.from_numpy(labels)
            )
