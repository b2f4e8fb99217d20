"""The P x K sampler: P distinct speakers, K chunks of each, a pure function of (seed, epoch, step)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from spkverif.base.errors import SpkverifError
from spkverif.training.sampler import ChunkLengths, SpeakerChunkSampler, SpeakerIndex


def _index(speakers: int = 12, utterances: int = 5) -> SpeakerIndex:
    utt2spk = {f"s{s:02d}-{u}": f"s{s:02d}" for s in range(speakers) for u in range(utterances)}
    rng = np.random.default_rng(0)
    return SpeakerIndex.build(utt2spk, {utt: int(rng.integers(8000, 40000)) for utt in utt2spk})


@pytest.mark.parametrize(("p", "k"), [(12, 1), (4, 3), (2, 5), (3, 8)])
def test_every_batch_holds_p_speakers_k_times(p: int, k: int) -> None:
    index = _index()
    sampler = SpeakerChunkSampler(index, p, k, chunk_samples=16000, seed=3)
    for step in range(20):
        batch = sampler.batch(epoch=1, step=step)
        counts = Counter(r.label for r in batch)
        assert len(counts) == p and set(counts.values()) == {k}
        for request in batch:
            assert index.labels[request.utterance] == request.label
            assert 0 <= request.offset <= max(0, index.num_samples[request.utterance] - 16000)
        if k <= 5:  # a speaker's K chunks come from K different utterances while it has that many
            for label in counts:
                assert len({r.utterance for r in batch if r.label == label}) == k


def test_batches_are_a_pure_function_of_seed_epoch_and_step() -> None:
    sampler = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=16000, seed=7)
    again = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=16000, seed=7)
    assert sampler.batch(2, 5) == again.batch(2, 5)
    assert [sampler.batch(0, s) for s in (3, 1, 2)] == [again.batch(0, s) for s in (3, 1, 2)]
    assert sampler.batch(2, 5) != sampler.batch(2, 6) != sampler.batch(3, 5)
    other_seed = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=16000, seed=8)
    assert sampler.batch(2, 5) != other_seed.batch(2, 5)


def test_impossible_batches_are_refused() -> None:
    with pytest.raises(SpkverifError, match="only 12 speakers"):
        SpeakerChunkSampler(_index(), 13, 2, chunk_samples=16000, seed=0)
    with pytest.raises(SpkverifError, match="at least 1"):
        SpeakerChunkSampler(_index(), 4, 0, chunk_samples=16000, seed=0)


def test_chunk_lengths_are_drawn_a_step_on_the_granule_and_leave_the_rest_of_the_batch_alone() -> None:
    lengths = ChunkLengths(16000, 48000, 160)
    varied = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=lengths, seed=7)
    fixed = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=16000, seed=7)
    drawn = []
    for step in range(200):
        batch = varied.batch(0, step)
        length = lengths.draw(7, 0, step)
        assert {r.samples for r in batch} == {length} and {r.source_samples for r in batch} == {length}
        assert [r.samples for r in varied.batch(0, step, part=1)] == [length] * 8  # every micro-batch of the step
        for request in batch:
            assert 0 <= request.offset <= max(0, varied.index.num_samples[request.utterance] - length)
        assert [r.label for r in batch] == [r.label for r in fixed.batch(0, step)]  # the speakers drawn first
        drawn.append(length)
    drawn = np.array(drawn)
    assert drawn.min() >= 16000 and drawn.max() <= 48000 and set(drawn % 160) == {0}
    assert len(set(drawn.tolist())) > 100 and 0.4 < drawn.mean() / 32000 - 0.5 < 0.6  # uniform: mean 32,000
    assert drawn.tolist() == [lengths.draw(7, 0, step) for step in range(200)] != [
        lengths.draw(8, 0, step) for step in range(200)
    ]
    assert ChunkLengths(16000).draw(7, 0, 3) == ChunkLengths(16000, 8000).draw(7, 0, 3) == 16000
    assert ChunkLengths(16000, 48000).most == 48000 and ChunkLengths(16000).most == 16000
    with_speeds = SpeakerChunkSampler(_index(), 4, 2, chunk_samples=lengths, seed=7, speeds=(0.9, 1.1))
    for request in with_speeds.batch(0, 3):
        assert request.source_samples == round(lengths.draw(7, 0, 3) * request.speed)
