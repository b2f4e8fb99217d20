"""Training lowers each loss; the trainer schedules and logs the margin; impossible batches fail at start-up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from spkverif.losses import build_loss
from spkverif.training.checkpoint import read_checkpoint
from tests.test_cli import TINY_MODEL, _assert_one_line_error
from tests.test_training_scale import TINY, _assert_identical, _weights, train_two_ways

CASES = [
    ("softmax", {}),
    ("center", {}),
    ("coco", {}),
    ("aam", {}),
    ("aam", {"preset": "modern"}),
    ("am", {}),
    ("subcenter_aam", {}),
    ("contrastive", {}),
    ("contrastive", {"distance": "euclidean", "margin": 1.0}),
    ("triplet", {"mining": "batch-all"}),
    ("triplet", {"mining": "batch-hard"}),
    ("triplet", {"mining": "semi-hard", "distance": "euclidean"}),
]


def _clusters(classes: int, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy points around one random centre per class: a task a small network can learn in a few dozen steps."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 16, generator=generator)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return centres[labels] + 1.2 * torch.randn(len(labels), 16, generator=generator), labels


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_a_few_dozen_steps_lower_the_loss(name: str, options: dict) -> None:
    torch.manual_seed(0)
    inputs, labels = _clusters(classes=8, per_class=40, seed=0)
    network = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
    head = build_loss(name, 16, 8, options)
    optimizer = torch.optim.Adam([*network.parameters(), *head.parameters()], lr=0.01)
    held_out, held_out_labels = _clusters(classes=8, per_class=4, seed=0)
    # Batch-all and semi-hard average over the triplets they pick, which grow fewer and
    # change as the network learns; their progress is read on the batch-hard triplet loss.
    judge = build_loss(name, 16, 8, {**options, "mining": "batch-hard"}) if name == "triplet" else head

    def held_out_loss() -> float:
        head.eval()
        with torch.no_grad():
            value = judge(network(held_out), held_out_labels).loss.item()
        head.train()
        return value

    before = held_out_loss()
    generator = torch.Generator().manual_seed(1)
    for _ in range(40):  # batches of 8 speakers x 4 samples
        picks = torch.cat([torch.randperm(40, generator=generator)[:4] + 40 * c for c in range(8)])
        loss = head(network(inputs[picks]), labels[picks]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        head.finish_step(lambda tensor: tensor)
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)


def _train_args(data: Path, exp: Path, *extra: str) -> list[str]:
    return ["train", "-q", "--data", str(data), "--exp", str(exp), *TINY_MODEL, *extra]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--loss", "contrastive", "--speakers-per-batch", "1", "--utts-per-speaker", "2"], "at least 2 speakers"),
        (["--loss", "triplet", "--utts-per-speaker", "1"], "at least 2 utterances per speaker"),
        (["--loss", "triplet", "--utts-per-speaker", "2", "--mining", "hardest"], "unknown triplet mining 'hardest'"),
        (["--loss", "aam", "--mining", "batch-hard"], "loss 'aam' has no option 'mining'"),
        (["--loss", "softmax", "--margin-scheduler", "linear"], "loss 'softmax' has none"),
        (["--loss", "aam", "--set", "loss.preset=huge"], "unknown aam preset 'huge'"),
    ],
)
def test_a_batch_or_option_a_loss_cannot_use_fails_at_start_up(
    run_cli, tiny_corpus: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    result = run_cli(*_train_args(tiny_corpus / "train", tmp_path / "e", *extra))
    _assert_one_line_error(result, fragment)
    assert not (tmp_path / "e" / "models").exists()


def test_the_trainer_drives_and_logs_the_margin(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    args = ["--loss", "aam", "--set", "loss.margin=0.3", "--margin-scheduler", "linear", "--epochs", "3"]
    args += ["--batches-per-epoch", "2", "--set", "training.log_every=1"]
    args += ["--set", "margin_scheduler.warmup_epochs=1", "--set", "margin_scheduler.ramp_epochs=1"]
    assert run_cli(*_train_args(tiny_corpus / "train", tmp_path / "e", *args)).exit_code == 0
    records = [json.loads(line) for line in (tmp_path / "e" / "train_log.jsonl").read_text().splitlines()]
    margins = [r["margin"] for r in records if r["event"] == "step"]
    assert margins == pytest.approx([0.0, 0.0, 0.0, 0.15, 0.3, 0.3])  # the margin each step trained with


def test_triplet_with_mining_trains_and_saves_its_options(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    args = ["--loss", "triplet", "--mining", "semi-hard", "--utts-per-speaker", "2", "--set", "loss.margin=0.4"]
    assert run_cli(*_train_args(tiny_corpus / "train", tmp_path / "e", *args)).exit_code == 0
    saved = yaml.safe_load((tmp_path / "e" / "config.yaml").read_text())
    assert saved["loss"] == {"name": "triplet", "mining": "semi-hard", "margin": 0.4}
    records = [json.loads(line) for line in (tmp_path / "e" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    assert steps and all(math.isfinite(r["loss"]) and "margin" not in r for r in steps)


@pytest.mark.slow
def test_center_loss_under_torchrun_equals_one_process_accumulating(tiny_corpus: Path, tmp_path: Path) -> None:
    """The centres move once a step, summed over every process's micro-batch, so two gloo processes
    and one process accumulating two micro-batches keep the same centres and end with the same weights."""
    common = ["train", "-q", "--data", str(tiny_corpus / "train"), "--epochs", "1", "--batches-per-epoch", "3",
              "--device", "cpu", "--loss", "center", "--set", "loss.weight=0.1", *TINY]  # fmt: skip
    train_two_ways(common, tmp_path)
    _assert_identical(_weights(tmp_path / "ddp"), _weights(tmp_path / "one"))
    centers = [
        read_checkpoint(tmp_path / run / "models" / "epoch_0001.pt")["head_state"]["centers"] for run in ("ddp", "one")
    ]
    assert torch.equal(*centers) and centers[0].abs().sum() > 0
