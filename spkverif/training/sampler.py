"""Batches of P speakers x K chunks, each batch a pure function of (seed, epoch, step, part).

Because no batch depends on the ones before it, an epoch is simply a number of
batches (small and huge corpora train the same way), data-loader workers can
build any batch in any order, and a resumed run sees exactly the batches the
interrupted one would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spkverif.training.preflight import check_batch_fits


@dataclass
class SpeakerIndex:
    """Utterances grouped by integer speaker label, with their lengths in samples."""

    utterances: list[str]
    labels: np.ndarray
    num_samples: np.ndarray
    speakers: list[str]
    by_speaker: list[np.ndarray]

    @classmethod
    def build(cls, utt2spk: dict[str, str], num_samples: dict[str, int]) -> SpeakerIndex:
        utterances = list(utt2spk)
        speakers = sorted(set(utt2spk.values()))
        label_of = {speaker: label for label, speaker in enumerate(speakers)}
        labels = np.array([label_of[utt2spk[utt]] for utt in utterances], dtype=np.int64)
        lengths = np.array([num_samples[utt] for utt in utterances], dtype=np.int64)
        by_speaker = [np.flatnonzero(labels == label) for label in range(len(speakers))]
        return cls(utterances, labels, lengths, speakers, by_speaker)


@dataclass(frozen=True)
class ChunkLengths:
    """Training chunk lengths in samples: every chunk `shortest` long or, where `longest` is above
    it, each step's chunks one length drawn uniformly from `shortest`, `shortest + granule`, ...
    up to `longest`, the same for every micro-batch and process of the step. Kaldi's x-vector
    examples vary their length the same way (`allocate_egs.py --min-frames-per-chunk
    --max-frames-per-chunk`), one length an archive; here one a step, a pure function of
    (seed, epoch, step) so that a resumed run draws the same."""

    shortest: int
    longest: int = 0
    granule: int = 160

    @classmethod
    def of(cls, chunk_samples: int | ChunkLengths) -> ChunkLengths:
        """`chunk_samples` as `ChunkLengths`: one length as itself, lengths as they are."""
        return chunk_samples if isinstance(chunk_samples, ChunkLengths) else cls(chunk_samples)

    @property
    def most(self) -> int:
        """The longest chunk a step can draw, in samples."""
        return max(self.shortest, self.longest)

    def draw(self, seed: int, epoch: int, step: int) -> int:
        """The length in samples of step (epoch, step)'s chunks."""
        if self.longest <= self.shortest:
            return self.shortest
        choices = (self.longest - self.shortest) // self.granule + 1
        # a stream of its own: one length draws nothing from it, so runs of one length are as they were
        return self.shortest + self.granule * int(np.random.default_rng([seed, epoch, step, 1 << 20]).integers(choices))


@dataclass(frozen=True)
class ChunkRequest:
    """Read `source_samples` from `offset` of an utterance, play it at `speed`: a chunk `samples` long."""

    utterance: int
    label: int
    offset: int
    samples: int
    speed: float = 1.0
    source_samples: int = 0


class SpeakerChunkSampler:
    """Draw P distinct speakers, K utterances of each, a random chunk of each utterance.

    `chunk_samples` is one length, or `ChunkLengths` (a length drawn for each step). With speed
    perturbation each (speaker, speed) pair is its own class, as in Kaldi and WeSpeaker: the
    speaker is drawn first, then one speed for all its chunks.
    """

    def __init__(
        self,
        index: SpeakerIndex,
        speakers_per_batch: int,
        utts_per_speaker: int,
        chunk_samples: int | ChunkLengths,
        seed: int,
        speeds: tuple[float, ...] = (1.0,),
    ):
        check_batch_fits(speakers_per_batch, utts_per_speaker, len(index.speakers), "the data")
        self.index = index
        self.speakers_per_batch = speakers_per_batch
        self.utts_per_speaker = utts_per_speaker
        self.lengths = ChunkLengths.of(chunk_samples)
        self.seed = seed
        self.speeds = speeds

    @property
    def num_classes(self) -> int:
        return len(self.index.speakers) * len(self.speeds)

    @property
    def batch_size(self) -> int:
        return self.speakers_per_batch * self.utts_per_speaker

    def batch(self, epoch: int, step: int, part: int = 0) -> list[ChunkRequest]:
        rng = np.random.default_rng([self.seed, epoch, step, part])
        length = self.lengths.draw(self.seed, epoch, step)
        speakers = rng.choice(len(self.index.speakers), size=self.speakers_per_batch, replace=False)
        requests = []
        for speaker in speakers:
            pool = self.index.by_speaker[speaker]
            replace = len(pool) < self.utts_per_speaker
            speed_index = int(rng.integers(len(self.speeds))) if len(self.speeds) > 1 else 0
            speed = self.speeds[speed_index]
            label = int(speaker) + speed_index * len(self.index.speakers)
            source = round(length * speed)
            for utterance in rng.choice(pool, size=self.utts_per_speaker, replace=replace):
                spare = int(self.index.num_samples[utterance]) - source
                offset = int(rng.integers(0, spare + 1)) if spare > 0 else 0
                requests.append(ChunkRequest(int(utterance), label, offset, length, speed, source))
        return requests
