"""Loader throughput: random 2 s training chunks a second, from each kind of storage,
without and with the VoxCeleb recipe's augmentation, for one worker and for N.

    python bench/loader_throughput.py                  # one run, every source, 1 and 2 workers
    python bench/loader_throughput.py --workers 1 8 --seconds 5 --repeats 5

Chunks are drawn and read exactly as `spkverif train` does (SpeakerChunkSampler +
ChunkBatches, or ShardChunks for shards) from a sample of VoxCeleb2-like utterances
(7.78 s, cut from ../shared/data/librispeech) stored as

- `wav`, `flac`: files read with seeks (soundfile);
- `m4a pipes`: AAC files behind `ffmpeg ... |` wav.scp entries (prepare voxceleb2's default
  before decoding; needs ffmpeg on PATH, else skipped);
- `decoded copy`: the AAC files decoded once by `prepare voxceleb2 --decode-to` (the
  recipe's default storage);
- `shards`: the decoded copy packed by `spkverif shard`, read streaming.

With augmentation, the configuration is recipes/voxceleb/conf/ecapa_tdnn_aam.yaml's:
MUSAN-style noise (0-15 dB), music (5-15 dB) and babble (3-7 speakers, 13-20 dB) with
probability 0.6, room responses with probability 0.6, speed perturbation 0.9/1.0/1.1,
from fake MUSAN and RIR sets of realistic lengths (noise 20 s, music 60 s, speech 30 s,
room responses 0.3-1 s). "1 worker" is the loader's work in this process with one torch
thread (what each data-loader worker does); "N workers" is a DataLoader with N worker
processes. Each figure is the median of --repeats timed windows of --seconds; the
machine may be shared, so medians are quoted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import soundfile
import torch
from torch.utils.data import DataLoader

from bench.samples import MEAN_SECONDS, speech_sources, vox2_path
from spkverif.base.progress import set_quiet
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.stages.decode import DecodeOptions
from spkverif.stages.prepare.voxceleb import ffmpeg_command, prepare_voxceleb2
from spkverif.training.augment import SPEEDS, ChunkAugmenter, LazyAudioPool, noise_kinds
from spkverif.training.dataset import ChunkBatches, single_threaded_worker
from spkverif.training.sampler import SpeakerChunkSampler, SpeakerIndex
from tests.fake_corpora import write_m4a

RATE = 16000
CHUNK = 2 * RATE
BATCH = (32, 1)  # P speakers x K chunks a batch
TARGETS = {False: 1000, True: 400}  # chunks/s a worker from the recipe's default storage


def _save(directory: Path, paths: dict[str, str], speakers: dict[str, str], seconds: dict[str, float]) -> Path:
    DataDir(paths, speakers, utt2dur=seconds).save(directory)
    return directory


def make_sources(work: Path, count: int) -> dict[str, Path]:
    """Data directories of the same utterances in each storage; shards where `spkverif shard` exists."""
    sources = speech_sources(count)
    utts = [f"id{i // 5:05d}-video00001-{i % 5 + 1:05d}" for i in range(count)]
    speakers = {utt: utt[:7] for utt in utts}
    seconds = {utt: MEAN_SECONDS for utt in utts}
    made: dict[str, Path] = {}
    for extension in ("wav", "flac"):
        paths = {}
        for index, (utt, samples) in enumerate(zip(utts, sources, strict=True)):
            path = vox2_path(work / "tree", index, extension, per_speaker=5)
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, samples, RATE, subtype="PCM_16")
            paths[utt] = str(path)
        made[extension] = _save(work / f"data_{extension}", paths, speakers, seconds)
    m4a = {
        utt: write_m4a(vox2_path(work / "tree", i, "m4a", 5), s, "aac")
        for i, (utt, s) in enumerate(zip(utts, sources, strict=True))
    }
    if shutil.which("ffmpeg") is not None:
        made["m4a pipes"] = _save(
            work / "data_pipes", {u: ffmpeg_command(p) for u, p in m4a.items()}, speakers, seconds
        )
    else:
        print("note: ffmpeg is not on PATH: the m4a pipes are not measured")
    prepare_voxceleb2(work / "tree", work / "decoded", decode_to=work / "audio", decode=DecodeOptions(jobs=2))
    made["decoded copy"] = work / "decoded" / "vox2_dev"
    try:
        from spkverif.stages.shard import shard
    except ImportError:
        print("note: spkverif.stages.shard is not here: shards are not measured")
    else:
        shard(made["decoded copy"], work / "sharded", work / "shards", shard_bytes=8 << 20)
        made["shards"] = work / "sharded"
    return made


def make_augmenter(work: Path) -> ChunkAugmenter:
    """ecapa_tdnn_aam.yaml's augmentation over fake MUSAN and RIR sets of realistic lengths."""
    rng = np.random.default_rng(1)
    for name, seconds, count in (("noise", 20, 40), ("music", 60, 20), ("speech", 30, 30)):
        paths = {}
        for index in range(count):
            path = work / "musan" / name / f"{name}-{index:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, (0.1 * rng.standard_normal(seconds * RATE)).astype(np.float32), RATE)
            paths[path.stem] = str(path)
        _save(work / "aug" / f"musan_{name}", paths, {k: k for k in paths}, {k: float(seconds) for k in paths})
    rirs = {}
    for index in range(60):
        length = int(rng.integers(int(0.3 * RATE), RATE))
        decay = np.exp(-np.arange(length) / (0.1 * RATE * rng.uniform(0.5, 2)))
        path = work / "rirs" / f"rir-{index:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, (rng.standard_normal(length) * decay * 0.5).astype(np.float32), RATE, subtype="FLOAT")
        rirs[path.stem] = str(path)
    _save(work / "aug" / "rirs", rirs, {k: k for k in rirs}, {k: 0.5 for k in rirs})
    noises = noise_kinds(work / "aug", RATE, [0, 15], [5, 15], [13, 20], [3, 7], 256)
    return ChunkAugmenter(noises, LazyAudioPool(work / "aug" / "rirs", RATE, 256), 0.6, 0.6)


def dataset_for(source: Path, augmenter: ChunkAugmenter | None) -> torch.utils.data.IterableDataset:
    data = load_data_dir(source)
    speeds = SPEEDS if augmenter is not None else (1.0,)
    lengths = {utt: round(data.utt2dur[utt] * RATE) for utt in data.utterances}
    index = SpeakerIndex.build(data.utt2spk, lengths)
    if (source / "shards.list").is_file():
        from spkverif.io.shards import read_shard_list
        from spkverif.training.streaming import ShardChunks

        labels = dict(zip(index.utterances, index.labels.tolist(), strict=True))
        shards = read_shard_list(source / "shards.list")
        batch = BATCH[0] * BATCH[1]
        return ShardChunks(shards, labels, len(index.speakers), CHUNK, batch, 0, speeds=speeds, augmenter=augmenter)
    sampler = SpeakerChunkSampler(index, BATCH[0], BATCH[1], CHUNK, seed=0, speeds=speeds)
    return ChunkBatches(sampler, AudioReader.from_data_dir(data), 1, 1_000_000, augmenter=augmenter)


def measure(source: Path, augmenter: ChunkAugmenter | None, workers: int, seconds: float) -> float:
    """Chunks a second over one timed window of at least `seconds` (and at least two batches)."""
    dataset = dataset_for(source, augmenter)
    if workers == 1:
        torch.set_num_threads(1)
        batches = iter(dataset)
    else:
        loader = DataLoader(
            dataset, batch_size=None, num_workers=workers, prefetch_factor=4, worker_init_fn=single_threaded_worker
        )
        batches = iter(loader)
        for _ in range(workers):  # the workers have started
            next(batches)
    chunks, count = 0, 0
    started = time.perf_counter()
    while count < 2 or time.perf_counter() - started < seconds:
        chunks += len(next(batches).inputs)
        count += 1
    rate = chunks / (time.perf_counter() - started)
    del batches
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=300, help="Utterances in the sample (5 a speaker).")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="Worker counts to measure.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Length of a timed window.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed windows a figure (the median is shown).")
    parser.add_argument("--sources", nargs="+", help="Measure only these storages (e.g. wav 'decoded copy').")
    args = parser.parse_args()
    set_quiet(True)
    print(f"CPU cores: {os.cpu_count()}; batches of {BATCH[0] * BATCH[1]} chunks of 2 s; medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        sources = make_sources(work, args.utterances)
        augmenter = make_augmenter(work)
        rows = []
        for name, path in sources.items():
            if args.sources and name not in args.sources:
                continue
            for augment in (False, True):
                figures = []
                for workers in args.workers:
                    runs = [
                        measure(path, augmenter if augment else None, workers, args.seconds)
                        for _ in range(args.repeats)
                    ]
                    figures.append(statistics.median(runs))
                rows.append((name, augment, figures))
                print(f"  measured {name}, augmentation {'on' if augment else 'off'}: {figures}", flush=True)
    header = "".join(f"{f'{w} worker' + ('s' if w > 1 else ''):>12}" for w in args.workers)
    print(f"\n{'storage':<14} {'augmentation':<13}{header}  {'target (1 worker)':>18}")
    for name, augment, figures in rows:
        cells = "".join(f"{figure:>12,.0f}" for figure in figures)
        target = ""
        if name == "decoded copy" and 1 in args.workers:
            met = figures[args.workers.index(1)] >= TARGETS[augment]
            target = f"{TARGETS[augment]:>10,} {'met' if met else 'MISSED'}"
        print(f"{name:<14} {'on' if augment else 'off':<13}{cells}  {target:>18}")


if __name__ == "__main__":
    main()
