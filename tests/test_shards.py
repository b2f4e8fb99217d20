"""Tar shards: `spkverif shard`, streaming batches that repeat and resume exactly, disjoint
streams, a truncated shard named in one line, and training from shards."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from spkverif.base.errors import SpkverifError
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.io.shards import read_shard_list
from spkverif.stages.shard import parse_size, shard
from spkverif.training.sampler import ChunkLengths, SpeakerIndex
from spkverif.training.streaming import ShardChunks

RATE = 16000


def _data(tmp_path: Path, speakers: int = 6, utts: int = 5) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    paths, utt2spk, audio = {}, {}, {}
    for s in range(speakers):
        for u in range(utts):
            utt = f"spk{s}-utt{u}"
            samples = np.round(rng.uniform(-0.3, 0.3, int(RATE * rng.uniform(0.4, 1.2))) * 32768) / 32768
            path = tmp_path / "audio" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, samples, RATE, subtype="PCM_16")
            paths[utt], utt2spk[utt], audio[utt] = str(path), f"spk{s}", samples.astype(np.float32)
    DataDir(paths, utt2spk).save(tmp_path / "data")
    return tmp_path / "data", audio


def _dataset(out: Path, **options) -> ShardChunks:
    data = load_data_dir(out)
    index = SpeakerIndex.build(data.utt2spk, {u: round(d * RATE) for u, d in data.utt2dur.items()})
    labels = dict(zip(index.utterances, index.labels.tolist(), strict=True))
    settings = {"steps": (1, 12, 0, 0), "buffer_size": 4, **options}
    settings.setdefault("chunk_samples", 4000)
    shards = read_shard_list(out / "shards.list")
    return ShardChunks(shards, labels, len(index.speakers), batch_size=5, seed=7, **settings)


@pytest.fixture
def sharded(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    data, audio = _data(tmp_path)
    shard(data, tmp_path / "sharded", tmp_path / "shards", shard_bytes=40_000)
    return tmp_path / "sharded", audio


def test_shards_hold_every_utterance_once_in_webdataset_layout(sharded, tmp_path: Path) -> None:
    out, audio = sharded
    shards = read_shard_list(out / "shards.list")
    assert len(shards) >= 4 and sum(s.utterances for s in shards) == len(audio)
    seen = {}
    for s in shards:
        with tarfile.open(s.path) as archive:
            names = archive.getnames()
            assert [n.rsplit(".", 1)[1] for n in names] == ["wav", "spk"] * s.utterances
            for name in names[::2]:
                utt = name[:-4]
                samples, _ = soundfile.read(archive.extractfile(name), dtype="float32")
                seen[utt] = samples
                assert archive.extractfile(f"{utt}.spk").read().decode() == utt.split("-")[0]
    assert sorted(seen) == sorted(audio)
    for utt, samples in seen.items():
        np.testing.assert_array_equal(samples, audio[utt])
    assert load_data_dir(out).utt2dur == pytest.approx({u: len(a) / RATE for u, a in audio.items()}, abs=1e-4)
    assert parse_size("1G") == 1 << 30 and parse_size("500M") == 500 << 20
    with pytest.raises(SpkverifError):
        parse_size("lots")


def test_streams_are_disjoint_and_cover_every_utterance_each_pass(sharded) -> None:
    out, audio = sharded
    dataset = _dataset(out)
    for number in range(2):
        seen = []
        for stream in range(4):  # e.g. 2 ranks x 2 workers
            chunks = [c for n, _, c in itertools_take(dataset.chunks(stream, 4), 100) if n == number]
            seen += [chunk.label for chunk in chunks]
        labels = SpeakerIndex.build(load_data_dir(out).utt2spk, dict.fromkeys(audio, 1)).labels
        assert sorted(seen) == sorted(labels.tolist())  # each utterance once, in some stream


def test_a_step_of_varied_lengths_cuts_each_chunk_to_its_steps_length(sharded) -> None:
    out, _ = sharded
    lengths = ChunkLengths(2000, 6000, 80)
    varied = _batches(_dataset(out, chunk_samples=lengths), 0)
    shapes = [batch[3].shape for batch in varied]
    assert shapes == [(5, lengths.draw(7, 0, step)) for step in range(12)] and len(set(shapes)) > 3
    dataset = _dataset(out, chunk_samples=lengths)
    for number, place, chunk in itertools_take(dataset.chunks(0, 1), 10):  # cut at 6,000, then to the step's
        longest = dataset.materialise(0, 1, number, place, chunk, 6000)
        assert len(chunk.samples) == 6000 and np.abs(longest).max() > 0  # utterances of 6,400 samples or more
        np.testing.assert_array_equal(dataset.materialise(0, 1, number, place, chunk, 2480), longest[:2480])


def itertools_take(iterator, count: int) -> list:
    return [item for _, item in zip(range(count), iterator, strict=False)]


def _batches(dataset: ShardChunks, workers: int) -> list[tuple]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    return [(b.epoch, b.step, b.part, b.inputs.numpy().copy(), b.labels.numpy().copy()) for b in loader]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_repeats_exactly_and_a_resumed_run_sees_the_same_batches(sharded, workers: int) -> None:
    out, _ = sharded
    full = _batches(_dataset(out, speeds=(1.0, 0.9, 1.1)), workers)
    again = _batches(_dataset(out, speeds=(1.0, 0.9, 1.1)), workers)
    assert len(full) == 12 and [b[:3] for b in full] == [(0, s, 0) for s in range(12)]
    for first, second in zip(full, again, strict=True):
        np.testing.assert_array_equal(first[3], second[3])
        np.testing.assert_array_equal(first[4], second[4])
    for start in (3, 7):  # 12 batches of 5 chunks cross pass boundaries (30 utterances a pass)
        resumed = _batches(_dataset(out, speeds=(1.0, 0.9, 1.1), steps=(1, 12, 0, start)), workers)
        assert len(resumed) == 12 - start
        for expected, actual in zip(full[start:], resumed, strict=True):
            assert expected[:3] == actual[:3]
            np.testing.assert_array_equal(expected[3], actual[3])
            np.testing.assert_array_equal(expected[4], actual[4])


def test_a_truncated_shard_is_named_in_one_line(sharded, run_cli) -> None:
    out, _ = sharded
    listed = read_shard_list(out / "shards.list")[1]
    victim = listed.path
    data = Path(victim).read_bytes()
    Path(victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(SpkverifError, match=f"shard {victim} is truncated"):
        read_shard_list(out / "shards.list")
    from spkverif.io.shards import iter_shard

    with pytest.raises(SpkverifError) as caught:
        list(iter_shard(victim, listed.utterances))
    assert str(caught.value).startswith(f"{victim}: shard is truncated or damaged") and "\n" not in str(caught.value)
    result = run_cli("train", "--data", out, "--exp", out.parent / "exp", "--dry-run")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"spkverif train: error: {out / 'shards.list'}:2: shard "
                                                  f"{victim} is truncated or damaged: {len(data) // 2} bytes, "
                                                  f"not {len(data)}"]  # fmt: skip


@pytest.mark.slow
def test_training_from_shards_resumes_to_the_same_weights(tiny_corpus: Path, tmp_path: Path, run_cli) -> None:
    """Train 2 epochs from shards with two loader workers; a run killed after its first
    checkpoint and resumed ends with the same weights and epoch losses, bit for bit."""
    from tests.test_training_scale import TINY, _assert_identical, _environment, _spkverif, _weights, kill_and_resume

    shard(tiny_corpus / "train", tmp_path / "sharded", tmp_path / "shards", shard_bytes=30_000)
    args = ["train", "-q", "--data", str(tmp_path / "sharded"), "--epochs", "2", "--batches-per-epoch", "6",
            "--checkpoint-every", "2", "--lr", "0.05", "--num-workers", "2", *TINY]  # fmt: skip
    assert subprocess.run(_spkverif(*args, "--exp", str(tmp_path / "full")), env=_environment()).returncode == 0
    kill_and_resume(args, tmp_path / "killed", "step_*.pt")
    _assert_identical(_weights(tmp_path / "full"), _weights(tmp_path / "killed"))

    def epochs(exp: str) -> list[tuple]:
        log = (tmp_path / exp / "train_log.jsonl").read_text().splitlines()
        return [(r["epoch"], r["loss"]) for r in map(json.loads, log) if r["event"] == "epoch"]

    assert epochs("full") == epochs("killed") and len(epochs("full")) == 2
    refused = run_cli("train", "--data", tmp_path / "sharded", "--exp", tmp_path / "pairs", "--loss", "triplet",
                      "--utts-per-speaker", "2", *TINY)  # fmt: skip
    assert refused.exit_code == 1 and "needs P x K batches, which shards cannot give" in refused.output
    refused = run_cli("train", "--data", tmp_path / "sharded", "--exp", tmp_path / "preload", "--preload", *TINY)
    assert refused.exit_code == 1 and "--preload) reads a data directory's audio into memory" in refused.output
    assert not (tmp_path / "preload" / "models").exists()
    refused = run_cli(
        "train", "--data", tmp_path / "sharded", "--exp", tmp_path / "pre", "--precompute-features", *TINY
    )
    assert refused.exit_code == 1 and "computes the features of a data directory's audio once" in refused.output
    assert not (tmp_path / "pre" / "models").exists()
