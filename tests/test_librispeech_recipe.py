"""recipes/librispeech/run.sh: every stage on a fake tree with the corpus's layout, and a short
training on the shared real subset (../shared/data/librispeech) with a bound on test-other's EER."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from spkverif.io.specifiers import load_vectors
from spkverif.io.trials import read_trials
from spkverif.metrics import compute_eer
from spkverif.models.files import read_checkpoint
from spkverif.runtime import open_models
from spkverif.training.checkpoint import average_states
from tests.fake_corpora import make_fake_librispeech
from tests.shared_data import LIBRISPEECH, needs_librispeech

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "librispeech" / "run.sh"
# The fake tree's trainings leave conf/cpu.yaml's compile off: compiling a 32-channel network takes
# longer than training it (tests/test_training_scale.py tests the compiled encoder; the real-speech
# test below runs the recipe with it)
TINY_TRAINING = (
    "--epochs 2 --batches-per-epoch 3 --speakers-per-batch 4 --chunk-seconds 0.5 "
    "--set model.channels=32 --set model.stats_channels=64 --set model.embedding_dim=16 --set training.compile=false"
)
# The CI test's short training on the shared subset: one of the CPU configuration's members (the recipe
# trains five; the fake tree's test runs them as an ensemble; one keeps CI's time) for 150 of its 500
# batches, as 6 checkpoints of 25, the final model the mean of the last 4, the encoder compiled and the
# features computed once as conf/cpu.yaml has it. Measured with seed 0 on the 2-core Xeon: 5.04% (cosine)
# and 2.47% (AS-norm), 66 s for the test; with the fbank on every chunk, 4.38% and 3.07% (98 s); that with
# three members 4.00% and 1.78% (296 s); two, 4.07% and 2.58% (214 s); two uncompiled, 4.00% and 1.56%
# (154 s). Earlier forms of this test measured 4.22% and 2.44% (one float32 network, 40 mel
# bins), 5.13% and 3.73% (80 mel bins), 4.89% and 4.20% (the 256-d embedding), 5.11% and 4.27% (120
# batches, then 30 of large-margin fine-tuning), 5.33% and 4.47% (120 batches; 5.58% and 4.22% with seed
# 1). The bound of 10% leaves room for other CPUs, thread counts and library versions, which change the
# rounding that training amplifies.
# the fake tree's 6 training speakers with four 1-s utterances each: 2 held out, cut into 0.5-s segments
FAKE_DEV = ("--dev-speakers", "2", "--dev-seconds", "0.5")
SHORT_TRAINING = "--epochs 6 --batches-per-epoch 25 --average 4"
SHORT_TRAINING_EER_BOUND = 0.10


def _run(tmp_path: Path, corpus: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    assert shutil.which("spkverif", path=env["PATH"]), "spkverif must be installed (make test does it)"
    return subprocess.run(
        ["bash", str(RECIPE), "--corpus", str(corpus), "--data", str(tmp_path / "data"),
         "--exp", str(tmp_path / "exp"), *args],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip


def _eer_from_files(scores: Path, trials_path: Path) -> float:
    """EER computed here from the score file and the trials, independently of `spkverif report`."""
    table = {}
    for line in scores.read_text().splitlines():
        enroll, test, score = line.split()
        table[(enroll, test)] = float(score)
    trials = read_trials(trials_path)
    values = np.array([table[(e, t)] for e, t in zip(trials.enroll, trials.test, strict=True)])
    return compute_eer(values, trials.require_labels())


@pytest.mark.slow
def test_every_stage_on_a_fake_tree(tmp_path: Path) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"train-clean-100": 6, "test-other": 3}, seconds=1.0)
    result = _run(tmp_path, tmp_path / "corpus", "--top-n", "5", "--train-opts", TINY_TRAINING, *FAKE_DEV)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in range(6):
        assert f"stage {stage}:" in result.stdout
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir() if not p.name.endswith("_telephone")) == [
        "cohort", "dev", "dev_speakers", "test_other", "train", "train_clean_100",
    ]  # fmt: skip
    # the dev set: 2 of the 6 training speakers held out (train and cohort keep the other 4), their
    # utterances cut into as many 0.5-s segments as fit, every pair of segments a trial
    held_out = (data / "dev_speakers").read_text().split()
    assert len(held_out) == 2 and len((data / "train" / "spk2utt").read_text().splitlines()) == 4
    assert not set(held_out) & set((data / "cohort" / "utt2spk").read_text().split()[1::2])
    durations = [line.split() for line in (data / "train_clean_100" / "utt2dur").read_text().splitlines()]
    segments = sum(int(float(d) / 0.5 + 1e-6) for utt, d in durations if utt.split("-")[0] in held_out)
    assert len((data / "dev" / "segments").read_text().splitlines()) == segments >= 8
    dev_trials = segments * (segments - 1) // 2
    assert len((data / "dev" / "trials").read_text().splitlines()) == dev_trials
    assert len((data / "test_other" / "trials").read_text().splitlines()) == 12 * 11 // 2
    rows = json.loads((tmp_path / "exp" / "report.json").read_text())
    assert [row["system"] for row in rows] == [
        "cpu dev.cosine", "cpu dev.asnorm", "cpu test_other.cosine", "cpu test_other.asnorm",
    ]  # fmt: skip
    assert [row["trials"] for row in rows] == [dev_trials, dev_trials, 66, 66]
    assert all(0.0 <= row["eer"] <= 1.0 for row in rows)
    assert rows[2]["ci"]["unit"] == "enrolment speaker"
    eer = _eer_from_files(tmp_path / "exp" / "cpu" / "scores" / "test_other.cosine", data / "test_other" / "trials")
    assert eer == pytest.approx(rows[2]["eer"])
    assert (tmp_path / "exp" / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    times = (tmp_path / "exp" / "stage_times.txt").read_text()
    assert all(f"stage {stage} took" in times for stage in range(5))
    # stage 1 is five trainings (--members 5, the default; conf/cpu.yaml has no _lm.yaml beside it), seeds
    # 0, 1000, ..., 4000, each final model the mean of its last 14 epochs, here the only 2 (a warning says so)
    member_names = ["cpu", *(f"cpu_member{k}" for k in range(2, 6))]
    assert "stage 1: train took" not in times and not (tmp_path / "exp" / "cpu_pretrain").exists()
    assert all(f"stage 1: {member} took" in times for member in member_names)
    assert not (tmp_path / "exp" / "cpu_member6").exists()
    assert "warning: member 1 took" not in result.stderr  # seconds, against --train-budget's 600
    assert "warning: the 5 members took" not in result.stderr
    # the last two (--channel-members 2) from conf/cpu_channel.yaml: channel augmentation on half the
    # chunks, so the fbank of every chunk
    for k, (member, seed) in enumerate(zip(member_names, range(0, 5000, 1000), strict=True)):
        config = yaml.safe_load((tmp_path / "exp" / member / "config.yaml").read_text())
        assert (config["training"]["init"], config["training"]["average_last"], config["seed"]) == ("", 14, seed)
        channel = k >= 3
        assert config["data"]["precompute_features"] is not channel
        assert config["augment"]["channel_prob"] == (0.5 if channel else 0.0)
        assert f"member {k + 1} of 5: conf/cpu{'_channel' if channel else ''}.yaml, seed {seed}" in result.stdout
    assert result.stderr.count("--average 14 asked for, but only 2 epoch checkpoints exist") == 5
    assert "final model: the mean of epoch_0001.pt, epoch_0002.pt" in result.stderr
    # stages 2-5 run the five as one ensemble: 16-d embeddings each, concatenated
    members = [tmp_path / "exp" / member / "models" / "final.pt" for member in member_names]
    keys, vectors = load_vectors(f"scp:{tmp_path / 'exp' / 'cpu' / 'embeddings' / 'test_other.scp'}")
    assert vectors.shape == (12, 80)
    ensemble = open_models(members, "cpu")
    table = dict(line.split(maxsplit=1) for line in (data / "test_other" / "wav.scp").read_text().splitlines())
    for key, vector in list(zip(keys, vectors, strict=True))[:3]:
        samples = soundfile.read(table[key], dtype="float32")[0]
        np.testing.assert_allclose(vector, ensemble(samples[None])[0], atol=1e-5)
    # stage 8: the same checkpoints averaged over the last 1 and the last 2, one table
    sweep = _run(
        tmp_path, tmp_path / "corpus", "--stage", "8", "--stop-stage", "8", "--average-sweep", "1 2", *FAKE_DEV
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    models = tmp_path / "exp" / "cpu" / "models"
    for k, epochs in ((1, [2]), (2, [1, 2])):
        expected = average_states([read_checkpoint(models / f"epoch_000{e}.pt")["model_state"] for e in epochs])
        final = read_checkpoint(tmp_path / "exp" / "averages" / f"k{k}" / "models" / "final.pt")["state_dict"]
        for key, value in expected.items():
            torch.testing.assert_close(final[key], value, rtol=0, atol=1e-7)
    rows = json.loads((tmp_path / "exp" / "averages" / "report.json").read_text())
    assert [(row["system"], row["trials"]) for row in rows] == [
        ("last 1", dev_trials),
        ("last 2", dev_trials),
    ]  # chosen on dev
    last = _eer_from_files(tmp_path / "exp" / "averages" / "k2" / "scores" / "dev.cosine", data / "dev" / "trials")
    assert last == pytest.approx(rows[1]["eer"])
    first = read_checkpoint(models / "final.pt")["state_dict"]  # "last 2" is the first member's own final model
    swept = read_checkpoint(tmp_path / "exp" / "averages" / "k2" / "models" / "final.pt")["state_dict"]
    for key, value in swept.items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)
    # stage 6: the loss comparison, each loss with each seed, one table a set (dev, then the test set)
    losses = _run(
        tmp_path, tmp_path / "corpus", "--stage", "6", "--stop-stage", "6", "--losses", "softmax triplet",
        "--loss-seeds", "0 5", "--train-opts", TINY_TRAINING, *FAKE_DEV,
    )  # fmt: skip
    assert losses.returncode == 0, losses.stderr[-3000:]
    comparison = tmp_path / "exp" / "losses"
    rows = json.loads((comparison / "dev" / "report.json").read_text())
    assert [(row["system"], row["trials"]) for row in rows] == [("softmax", dev_trials)] * 2 + [
        ("triplet", dev_trials)
    ] * 2
    assert [row["scores"] for row in rows[:2]] == [
        str(comparison / name / "scores" / "dev.cosine") for name in ("softmax", "softmax_seed5")
    ]
    runs = json.loads((comparison / "dev" / "runs.json").read_text())
    assert [(run["system"], run["runs"]) for run in runs] == [("softmax", 2), ("triplet", 2)]
    assert runs[0]["eer"]["mean"] == pytest.approx((rows[0]["eer"] + rows[1]["eer"]) / 2)
    tested = json.loads((comparison / "test_other" / "report.json").read_text())
    assert [row["trials"] for row in tested] == [12 * 11 // 2] * 4
    seeds = [
        yaml.safe_load((comparison / name / "config.yaml").read_text())["seed"] for name in ("triplet", "triplet_seed5")
    ]
    assert seeds == [0, 5]
    triplet = yaml.safe_load((comparison / "triplet" / "config.yaml").read_text())
    assert (triplet["loss"]["name"], triplet["training"]["utts_per_speaker"]) == ("triplet", 4)
    if shutil.which("ffmpeg") is None:
        assert "stage 5: skipped" in result.stdout
    else:
        rows = json.loads((tmp_path / "exp" / "telephone" / "report.json").read_text())
        assert [row["system"] for row in rows] == [
            "cpu dev_telephone.cosine", "cpu dev_telephone.asnorm",
            "cpu test_other_telephone.cosine", "cpu test_other_telephone.asnorm",
        ]  # fmt: skip
        assert "ffmpeg" in (data / "test_other_telephone" / "wav.scp").read_text()


@pytest.mark.slow
def test_stage_1_fine_tunes_with_the_lm_config_beside_the_config(tmp_path: Path) -> None:
    """`--lm-config auto` (the default) finds CONFIG_lm.yaml, as conf/gpu.yaml's conf/gpu_lm.yaml.

    With `--members 3` and `--train-budget 1` (seconds), member 1's two trainings (at least a second
    each, to start Python and PyTorch) project past the budget: a warning, and members 2 and 3 still
    train."""
    make_fake_librispeech(tmp_path / "corpus", {"train-clean-100": 6, "test-other": 3}, seconds=1.0)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "small.yaml").write_text(f"defaults: {RECIPE.parent / 'conf' / 'cpu.yaml'}\n")
    (conf / "small_lm.yaml").write_text("defaults: small.yaml\nloss:\n  margin: 0.4\n")
    result = _run(
        tmp_path, tmp_path / "corpus", "--stop-stage", "1", "--config", str(conf / "small.yaml"),
        "--name", "small", "--train-opts", TINY_TRAINING, "--train-budget", "1", "--members", "3", *FAKE_DEV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    times = (tmp_path / "exp" / "stage_times.txt").read_text()
    assert "stage 1: train took" in times and "stage 1: fine-tune took" in times
    took = int(re.search(r"stage 1: small took (\d+) s", times)[1])
    warning = f"warning: member 1 took {took} s, so 3 members will take about {3 * took} s, over --train-budget 1 s"
    assert result.stderr.count(warning) == 1, result.stderr[-3000:]
    assert "not even one member keeps to it" in result.stderr  # no member fits in 1 s
    total = int(re.search(r"stage 1 took (\d+) s", times)[1])  # and afterwards, what they did take
    assert re.search(rf"warning: the 3 members took ({total}|{total - 1}) s, over --train-budget 1 s", result.stderr)
    assert (tmp_path / "exp" / "small_member3" / "models" / "final.pt").is_file()
    config = yaml.safe_load((tmp_path / "exp" / "small" / "config.yaml").read_text())
    assert config["training"]["init"] == str(tmp_path / "exp" / "small_pretrain" / "models" / "epoch_0002.pt")
    assert (config["data"]["chunk_seconds"], config["loss"]["margin"]) == (0.5, 0.4)  # --train-opts, then small_lm
    assert (tmp_path / "exp" / "small" / "models" / "final.pt").is_file()


@pytest.mark.slow
@needs_librispeech
def test_short_training_on_real_speech_meets_its_bound(tmp_path: Path) -> None:
    # conf/cpu.yaml compiles its encoder; where no C++ compiler is here, train refuses it, so eager
    compiles = shutil.which(os.environ.get("CXX", "g++")) is not None
    options = SHORT_TRAINING if compiles else f"{SHORT_TRAINING} --set training.compile=false"
    result = _run(tmp_path, LIBRISPEECH, "--stop-stage", "3", "--members", "1", "--train-opts", options)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = tmp_path / "data" / "test_other" / "trials"
    assert len(trials.read_text().splitlines()) == 4950
    config = yaml.safe_load((tmp_path / "exp" / "cpu" / "config.yaml").read_text())
    log = [json.loads(line) for line in (tmp_path / "exp" / "cpu" / "train_log.jsonl").read_text().splitlines()]
    assert config["training"]["compile"] is compiles and [r["event"] for r in log].count("compiled") == int(compiles)
    eer = _eer_from_files(tmp_path / "exp" / "cpu" / "scores" / "test_other.cosine", trials)
    asnorm = _eer_from_files(tmp_path / "exp" / "cpu" / "scores" / "test_other.asnorm", trials)
    print(
        f"test-other EER after the short training: cosine {100 * eer:.2f}%, AS-norm {100 * asnorm:.2f}% "
        f"(bound {100 * SHORT_TRAINING_EER_BOUND:.0f}%)"
    )
    assert eer < SHORT_TRAINING_EER_BOUND
    assert asnorm < SHORT_TRAINING_EER_BOUND


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--members", "0", "--members must be 1 or more, not '0'"),
        ("--channel-members", "two", "option --channel-members takes a whole number, not 'two'"),
    ],
)
def test_a_bad_member_count_is_one_line_before_any_stage(tmp_path: Path, option: str, value: str, message: str) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"test-other": 2}, seconds=0.5)
    result = _run(tmp_path, tmp_path / "corpus", option, value)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{RECIPE}: {message}"]
    assert "stage 0" not in result.stdout and not (tmp_path / "data").exists()
