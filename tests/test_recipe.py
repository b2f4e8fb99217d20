"""The mini recipe end to end at a tiny size, stage selection included."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "run.sh"
TRAIN_OPTS = (
    "--epochs 1 --batches-per-epoch 4 --speakers-per-batch 4 --chunk-seconds 0.5 "
    "--set model.channels=32 --set model.stats_channels=64 --set model.embedding_dim=16"
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    assert shutil.which("spkverif", path=env["PATH"]), "spkverif must be installed (make test does it)"
    return subprocess.run(
        ["bash", str(RECIPE), "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
         "--num-speakers", "10", "--num-test-speakers", "4", "--utts-per-speaker", "4", "--num-trials", "40",
         "--train-opts", TRAIN_OPTS, *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_recipe_runs_end_to_end(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in range(5):
        assert f"stage {stage}:" in result.stdout
    rows = json.loads((tmp_path / "exp" / "report.json").read_text())
    assert [row["system"] for row in rows] == ["xvector_aam test.cosine", "xvector_aam test.asnorm"]
    assert all(row["trials"] == 40 and 0.0 <= row["eer"] <= 1.0 for row in rows)
    assert rows[0]["ci"]["unit"] == "enrolment speaker"
    assert "EER (%)" in result.stdout
    assert (tmp_path / "exp" / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    times = (tmp_path / "exp" / "stage_times.txt").read_text().splitlines()
    assert [line.split(" took ")[0] for line in times] == [f"stage {n}" for n in range(5)]
    assert all(re.fullmatch(r"stage \d took \d+ s", line) for line in times)

    first = (tmp_path / "exp" / "xvector_aam" / "scores" / "test.cosine").read_text()
    (tmp_path / "exp" / "report.json").unlink()
    again = _run(tmp_path, "--stage", "3", "--stop-stage", "3")
    assert again.returncode == 0
    assert "stage 3:" in again.stdout and "stage 2:" not in again.stdout and "stage 4:" not in again.stdout
    assert (tmp_path / "exp" / "stage_times.txt").read_text().splitlines()[5:] == [
        line for line in again.stdout.splitlines() if line.startswith("stage 3 took ")
    ]  # appended: the rerun's stage 3 alone
    assert not (tmp_path / "exp" / "report.json").exists()
    assert (tmp_path / "exp" / "xvector_aam" / "scores" / "test.cosine").read_text() == first

    comparison = _run(tmp_path, "--stage", "5", "--stop-stage", "5", "--losses", "softmax triplet")
    assert comparison.returncode == 0, comparison.stderr[-3000:]
    rows = json.loads((tmp_path / "exp" / "losses" / "report.json").read_text())
    assert [row["system"] for row in rows] == ["softmax", "triplet"]
    assert all(row["trials"] == 40 and 0.0 <= row["eer"] <= 1.0 for row in rows)


def test_recipe_rejects_unknown_options(tmp_path: Path) -> None:
    result = _run(tmp_path, "--no-such-option", "1")
    assert result.returncode != 0 and "unknown option --no-such-option" in result.stderr


@pytest.mark.slow
def test_stage_6_compares_the_networks_in_one_table(tmp_path: Path, tiny_corpus: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", str(RECIPE), "--data", str(tiny_corpus), "--exp", str(tmp_path / "exp"),
         "--stage", "6", "--stop-stage", "6", "--models", "xvector sinc_tdnn", "--train-opts", TRAIN_OPTS],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage 6:" in result.stdout and "stage 4:" not in result.stdout
    rows = json.loads((tmp_path / "exp" / "models" / "report.json").read_text())
    assert [row["system"] for row in rows] == ["xvector", "sinc_tdnn"]
    assert all(row["trials"] == 40 for row in rows)
    assert (tmp_path / "exp" / "models" / "sinc_tdnn" / "models" / "filters.png").is_file()
    assert not (tmp_path / "exp" / "models" / "xvector" / "models" / "filters.png").exists()
