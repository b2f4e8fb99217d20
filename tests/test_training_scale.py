"""The trainer at scale, shown small: torchrun equivalence, kill-and-resume, NaN handling,
checkpoint averaging, schedules, validation, mixed precision and data-loader workers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from spkverif.base.errors import SpkverifError
from spkverif.config import load_train_config, parse_override
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import load_data_dir
from spkverif.models import build_model
from spkverif.models.files import load_model
from spkverif.runtime.base import fit_length
from spkverif.stages.train import train
from spkverif.training.checkpoint import average_states, read_checkpoint
from spkverif.training.dataset import ChunkBatches
from spkverif.training.features import PrecomputedFeatures
from spkverif.training.optim import SCHEDULERS
from spkverif.training.sampler import ChunkLengths, SpeakerChunkSampler, SpeakerIndex
from tests.conftest import write_data_dir

TINY = [
    "--speakers-per-batch", "4", "--chunk-seconds", "0.5", "--set", "model.channels=32",
    "--set", "model.stats_channels=64", "--set", "model.embedding_dim=16",
]  # fmt: skip


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _spkverif(*args: str) -> list[str]:
    return [sys.executable, "-m", "spkverif", *args]


def _weights(exp: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(exp / "models" / "final.pt")["state_dict"]


def _assert_identical(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


TORCHRUN_GUARD_SECONDS = 900  # a hang guard, not a speed check: the run takes well under a minute


def _logs(directory: Path) -> str:
    """Every file under a torchrun --log-dir, whole, each under its path (rank/stdout.log, rank/stderr.log)."""
    parts = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        parts.append(f"===== {path.relative_to(directory)} =====\n{path.read_text(errors='replace')}")
    return "\n".join(parts) or "(no rank logs were written)"


def run_torchrun(args: list[str], log_dir: Path, processes: int = 2) -> None:
    """`torchrun --standalone` of `spkverif ARGS` with gloo, each rank's stdout and stderr kept whole
    in LOG_DIR (--log-dir, --redirects 3) and shown in full, with the launcher's output, if it fails."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
        "--log-dir", str(log_dir), "--redirects", "3", "-m", "spkverif", *args,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, env=_environment(), capture_output=True, text=True, timeout=TORCHRUN_GUARD_SECONDS
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"torchrun hung for {TORCHRUN_GUARD_SECONDS} s\n{_logs(log_dir)}") from error
    assert result.returncode == 0, (
        f"torchrun exited {result.returncode}\n===== launcher stdout =====\n{result.stdout}\n"
        f"===== launcher stderr =====\n{result.stderr}\n{_logs(log_dir)}"
    )


def train_two_ways(common: list[str], tmp_path: Path) -> None:
    """Train under torchrun with two gloo processes into tmp_path/ddp, and in one process
    accumulating two micro-batches into tmp_path/one."""
    run_torchrun([*common, "--exp", str(tmp_path / "ddp")], tmp_path / "torchrun_logs")
    single = subprocess.run(
        _spkverif(*common, "--exp", str(tmp_path / "one"), "--grad-accum", "2"),
        env=_environment(),
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_accumulating_two(tiny_corpus: Path, tmp_path: Path) -> None:
    """gloo on CPU: rank r builds micro-batch r of each step; --grad-accum 2 builds both in turn.
    With the same threads per process (torchrun sets one), the weights are bit-identical."""
    common = ["train", "-q", "--data", str(tiny_corpus / "train"), "--epochs", "1", "--batches-per-epoch", "4",
              "--device", "cpu", *TINY]  # fmt: skip
    train_two_ways(common, tmp_path)
    _assert_identical(_weights(tmp_path / "ddp"), _weights(tmp_path / "one"))
    start = json.loads((tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2 and start["chunks_per_step"] == 8


def kill_and_resume(args: list[str], exp: Path, checkpoint: str) -> None:
    """Run `spkverif ARGS --exp EXP`, SIGKILL it once a checkpoint matching `checkpoint`
    is written (before the end), then run it again with --resume to the end."""
    victim = subprocess.Popen(_spkverif(*args, "--exp", str(exp)), env=_environment())
    models = exp / "models"
    deadline = time.monotonic() + 120
    while not list(models.glob(checkpoint)) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    assert not (models / "final.pt").exists()
    resumed = subprocess.run(_spkverif(*args, "--exp", str(exp), "--resume"), env=_environment())
    assert resumed.returncode == 0


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny_corpus: Path, tmp_path: Path) -> None:
    args = ["train", "-q", "--data", str(tiny_corpus / "train"), "--epochs", "2", "--batches-per-epoch", "12",
            "--checkpoint-every", "3", "--lr", "0.05", *TINY]  # fmt: skip
    reference = subprocess.run(_spkverif(*args, "--exp", str(tmp_path / "full")), env=_environment())
    assert reference.returncode == 0
    kill_and_resume(args, tmp_path / "killed", "step_000000[1-2]*.pt")
    _assert_identical(_weights(tmp_path / "full"), _weights(tmp_path / "killed"))

    def epochs(exp: str) -> list[tuple]:
        log = (tmp_path / exp / "train_log.jsonl").read_text().splitlines()
        return [(r["epoch"], r["loss"], r["accuracy"]) for r in map(json.loads, log) if r["event"] == "epoch"]

    assert epochs("full") == epochs("killed")


def _config(*overrides: str):
    return load_train_config(None, [parse_override(text) for text in overrides])


TINY_SETTINGS = (
    "training.speakers_per_batch=4", "data.chunk_seconds=0.5", "model.channels=32", "model.stats_channels=64",
    "model.embedding_dim=16", "training.log_every=1",
)  # fmt: skip


@pytest.fixture(scope="module")
def poisoned_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six speakers; every utterance of speaker s5 holds NaN samples."""
    root = tmp_path_factory.mktemp("nan")
    rng = np.random.default_rng(0)
    files = {}
    for speaker in range(6):
        for number in range(3):
            samples = rng.uniform(-0.3, 0.3, 16000).astype(np.float32)
            if speaker == 5:
                samples[::500] = np.nan
            path = root / f"s{speaker}-{number}.wav"
            soundfile.write(path, samples, 16000, subtype="FLOAT")
            files[f"s{speaker}-{number}"] = str(path)
    return write_data_dir(root / "data", files, {utt: utt.split("-")[0] for utt in files})


def _first_poisoned_step(data: Path) -> int:
    utt2spk = dict(line.split() for line in (data / "utt2spk").read_text().splitlines())
    index = SpeakerIndex.build(utt2spk, dict.fromkeys(utt2spk, 16000))
    sampler = SpeakerChunkSampler(index, 4, 1, 8000, seed=0)
    poisoned = index.speakers.index("s5")
    return next(step for step in range(50) if any(r.label == poisoned for r in sampler.batch(0, step)))


def test_non_finite_audio_stops_training_naming_the_recording(poisoned_corpus: Path, tmp_path: Path) -> None:
    config = _config(*TINY_SETTINGS, "training.epochs=1", "training.batches_per_epoch=50")
    with pytest.raises(SpkverifError, match=r"recording 's5-\d' has a NaN sample at 0\.\d{3} s"):
        train(config, poisoned_corpus, tmp_path / "refused")


def test_non_finite_loss_stops_with_the_last_good_checkpoint(
    poisoned_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # audio with NaN is refused where it is read; let it through, as a network that blows up would
    monkeypatch.setattr("spkverif.io.audio.bad_sample", lambda *args, **kwargs: None)
    bad_step = _first_poisoned_step(poisoned_corpus)
    assert bad_step > 0
    config = _config(
        *TINY_SETTINGS, "training.epochs=1", "training.batches_per_epoch=50", "training.checkpoint_every=1"
    )
    with pytest.raises(SpkverifError, match=rf"at epoch 1, step {bad_step + 1}; the last good checkpoint is .*step_"):
        train(config, poisoned_corpus, tmp_path / "stop")
    checkpoints = list((tmp_path / "stop" / "models").glob("step_*.pt"))
    assert len(checkpoints) == 1 and checkpoints[0].name == f"step_{bad_step:08d}.pt"
    state = read_checkpoint(checkpoints[0])
    assert all(torch.isfinite(value).all() for value in state["model_state"].values() if value.is_floating_point())

    config = _config(
        *TINY_SETTINGS, "training.epochs=1", "training.batches_per_epoch=10", "training.skip_nonfinite=true"
    )
    train(config, poisoned_corpus, tmp_path / "skip")
    final = read_checkpoint(tmp_path / "skip" / "models" / "final.pt")["state_dict"]
    assert all(torch.isfinite(value).all() for value in final.values() if value.is_floating_point())
    epoch = [json.loads(line) for line in (tmp_path / "skip" / "train_log.jsonl").read_text().splitlines()][-1]
    assert epoch["event"] == "epoch" and epoch["skipped_nonfinite"] > 0


def test_average_of_last_epochs_and_validation(tiny_corpus: Path, tmp_path: Path) -> None:
    config = _config(
        *TINY_SETTINGS, "training.epochs=3", "training.batches_per_epoch=3", "training.average_last=2",
        f"training.valid_data={tiny_corpus / 'test'}", f"training.valid_trials={tiny_corpus / 'test' / 'trials'}",
    )  # fmt: skip
    train(config, tiny_corpus / "train", tmp_path / "avg")
    models = tmp_path / "avg" / "models"
    expected = average_states([read_checkpoint(models / f"epoch_000{e}.pt")["model_state"] for e in (2, 3)])
    final = read_checkpoint(models / "final.pt")["state_dict"]
    for key, value in expected.items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=1e-7)
    last = read_checkpoint(models / "epoch_0003.pt")["model_state"]
    assert any(not torch.equal(final[k], last[k]) for k in final if final[k].is_floating_point())
    records = [json.loads(line) for line in (tmp_path / "avg" / "train_log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["event"] == "valid"]
    assert len(valid) == 3 and all(0 <= r["eer"] <= 1 for r in valid)
    assert (models / "best.pt").is_file()


@pytest.mark.slow
def test_mixed_precision_workers_and_preloaded_audio_run(tiny_corpus: Path, tmp_path: Path) -> None:
    config = _config(*TINY_SETTINGS, "training.epochs=1", "training.batches_per_epoch=4", "training.amp=bf16")
    train(config, tiny_corpus / "train", tmp_path / "amp")
    records = [json.loads(line) for line in (tmp_path / "amp" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records if r["event"] == "step")
    base = (*TINY_SETTINGS, "training.epochs=1", "training.batches_per_epoch=4")
    train(_config(*base), tiny_corpus / "train", tmp_path / "inline")
    train(_config(*base, "data.num_workers=2"), tiny_corpus / "train", tmp_path / "workers")
    _assert_identical(_weights(tmp_path / "inline"), _weights(tmp_path / "workers"))
    # audio decoded into memory once (data.preload) gives the same chunks, so the same weights
    train(_config(*base, "data.preload=true"), tiny_corpus / "train", tmp_path / "preload")
    _assert_identical(_weights(tmp_path / "inline"), _weights(tmp_path / "preload"))
    train(_config(*base, "data.preload=true", "data.num_workers=2"), tiny_corpus / "train", tmp_path / "both")
    _assert_identical(_weights(tmp_path / "inline"), _weights(tmp_path / "both"))


def _learning_rates(name: str, steps: int, lr: float = 0.1, **options) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=lr)
    scheduler = SCHEDULERS.build(name, optimizer, total_steps=steps, steps_per_epoch=10, **options)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_learning_rate_schedules() -> None:
    assert _learning_rates("constant", 50) == [0.1] * 50
    rates = _learning_rates("exponential", 100, final_lr=1e-3, warmup_epochs=1)
    assert rates[0] == pytest.approx(0.01, rel=1e-6)
    assert rates[9] == pytest.approx(0.1 * (1e-2) ** (9 / 100), rel=1e-6)
    assert rates[99] == pytest.approx(0.1 * (1e-2) ** (99 / 100), rel=1e-6)
    assert all(a > b for a, b in itertools.pairwise(rates[9:]))
    cycle = _learning_rates("onecycle", 100, pct_start=0.3)
    assert max(cycle) == pytest.approx(0.1, rel=1e-3) and int(np.argmax(cycle)) in (29, 30)
    assert cycle[0] == pytest.approx(0.1 / 25, rel=1e-3) and cycle[-1] < cycle[0]


@pytest.mark.slow
def test_training_curves_are_drawn(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    config = _config(*TINY_SETTINGS, "training.epochs=2", "training.batches_per_epoch=2")
    train(config, tiny_corpus / "train", tmp_path / "curves")
    result = run_cli("report", "--training", tmp_path / "curves")
    assert result.exit_code == 0
    png = (tmp_path / "curves" / "training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert run_cli("report", "--training", tmp_path / "none").exit_code == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler for torch.compile")
def test_compiled_encoder_trains_the_same_network(tiny_corpus: Path, tmp_path: Path) -> None:
    # torch.compile fuses the encoder's operations: the weights differ from eager training's by rounding
    # alone, far less than an epoch moves them, and the checkpoints load into an uncompiled model
    base = (*TINY_SETTINGS, "training.epochs=2", "training.batches_per_epoch=3", "training.device=cpu")
    train(_config(*base), tiny_corpus / "train", tmp_path / "eager")
    train(_config(*base, "training.compile=true"), tiny_corpus / "train", tmp_path / "compiled")
    records = [json.loads(line) for line in (tmp_path / "compiled" / "train_log.jsonl").read_text().splitlines()]
    compiled_records = [r for r in records if r["event"] == "compiled"]  # what compiling cost, logged once
    assert len(compiled_records) == 1 and compiled_records[0]["seconds"] > 0
    assert not any(r["event"] == "compiled" for r in map(json.loads, (tmp_path / "eager" / "train_log.jsonl").open()))

    def state(run: str, epoch: int) -> dict[str, torch.Tensor]:
        return read_checkpoint(tmp_path / run / "models" / f"epoch_000{epoch}.pt")["model_state"]

    eager, compiled, before = state("eager", 2), state("compiled", 2), state("eager", 1)
    assert eager.keys() == compiled.keys()
    for key in (k for k in eager if k.endswith(".weight")):
        moved = (eager[key] - before[key]).abs().max()
        assert moved > 0, key
        assert (compiled[key] - eager[key]).abs().max() < 0.05 * moved, key
    loaded = load_model(tmp_path / "compiled" / "models" / "final.pt")  # an eager model, as extract builds it
    _assert_identical(loaded.state_dict(), compiled)
    assert not hasattr(loaded.encoder, "_compiled_call_impl") or loaded.encoder._compiled_call_impl is None


@pytest.mark.slow
def test_precomputed_features_are_the_chunks_features(tiny_corpus: Path, tmp_path: Path) -> None:
    # data.precompute_features: a chunk's features cut from its utterance's (computed once) are the front
    # end's features of the chunk's samples, from the chunk's start rounded down to a frame
    config = _config(*TINY_SETTINGS, "frontend.dither=0", "data.precompute_features=true")
    data = load_data_dir(tiny_corpus / "train")
    reader = AudioReader.from_data_dir(data, 16000)
    model = build_model("xvector", config.model.options, vars(config.frontend), 16000)
    features = PrecomputedFeatures(reader, data.utterances, model.frontend, 8000)
    index = SpeakerIndex.build(data.utt2spk, {utt: reader.num_samples(utt) for utt in data.utterances})
    sampler = SpeakerChunkSampler(index, 4, 1, 8000, seed=3)
    with_features = ChunkBatches(sampler, reader, 1, 2, features=features)
    with_samples = ChunkBatches(sampler, reader, 1, 2)
    for position in (0, 1):
        batch = with_features.load(position, 0)
        requests = sampler.batch(0, position)
        assert batch.inputs.shape == (4, model.frontend.num_frames(8000), model.frontend.output_dim)
        np.testing.assert_array_equal(batch.labels, with_samples.load(position, 0).labels)
        for chunk, request in zip(batch.inputs, requests, strict=True):
            utt = index.utterances[request.utterance]
            start = request.offset // 160 * 160
            samples = torch.from_numpy(reader.read(utt, start, 8000))[None]
            torch.testing.assert_close(chunk[None], model.frontend.unnormalised(samples), rtol=1e-5, atol=1e-4)
    lengths = ChunkLengths(4000, 8000, 160)  # data.chunk_seconds_max: each step's length, cut from the same features
    varied = ChunkBatches(SpeakerChunkSampler(index, 4, 1, lengths, seed=3), reader, 1, 4, features=features)
    for position in range(4):
        batch, length = varied.load(position, 0), lengths.draw(3, 0, position)
        assert batch.inputs.shape == (4, model.frontend.num_frames(length), model.frontend.output_dim)
        request = varied.sampler.batch(0, position)[0]
        samples = reader.read(index.utterances[request.utterance], request.offset // 160 * 160, length)
        expected = model.frontend.unnormalised(torch.from_numpy(samples)[None])[0]
        torch.testing.assert_close(batch.inputs[0], expected, rtol=1e-5, atol=1e-4)
    assert len({varied.load(position, 0).inputs.shape[1] for position in range(4)}) > 1
    utt = data.utterances[0]  # a start past the last whole chunk (utt2dur a frame long) ends at the last frame
    np.testing.assert_array_equal(features.chunk(utt, reader.num_samples(utt), 8000), features.features[utt][-48:])

    # utterances shorter than a chunk, one shorter than a 25 ms window: repeated, as fit_length does
    audio = {"short": reader.read(utt)[:5000], "tiny": reader.read(utt)[:100]}
    short = PrecomputedFeatures(SimpleNamespace(read=audio.__getitem__), list(audio), model.frontend, 8000)
    for name, samples in audio.items():
        expected = model.frontend.unnormalised(torch.from_numpy(fit_length(samples, 8000))[None])[0]
        torch.testing.assert_close(torch.from_numpy(short.chunk(name, 0, 8000)), expected, rtol=0, atol=0)

    # the network on them embeds as the model does from the samples (the front end's normalisation included)
    samples = torch.from_numpy(reader.read(data.utterances[0], 0, 8000))[None]
    model.eval()
    with_mean = model.embed_features(model.frontend.unnormalised(samples))
    torch.testing.assert_close(with_mean, model(samples), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(model.encoder(model.frontend.unnormalised(samples)), with_mean, atol=1e-3)

    # a training from them, whose model extracts from audio
    base = (*TINY_SETTINGS, "training.epochs=2", "training.batches_per_epoch=3", "training.average_last=2")
    train(_config(*base, "data.precompute_features=true"), tiny_corpus / "train", tmp_path / "pre")
    records = [json.loads(line) for line in (tmp_path / "pre" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["event"] == "step"]
    assert len(losses) == 6 and all(np.isfinite(losses))
    train(_config(*base, "data.precompute_features=true", "data.num_workers=2"), tiny_corpus / "train", tmp_path / "w")
    _assert_identical(_weights(tmp_path / "pre"), _weights(tmp_path / "w"))  # workers cut the same chunks
    loaded = load_model(tmp_path / "pre" / "models" / "final.pt")
    embeddings = loaded.eval()(torch.from_numpy(reader.read(data.utterances[0]))[None])
    assert embeddings.shape == (1, 16) and torch.isfinite(embeddings).all()
