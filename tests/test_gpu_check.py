"""bench/gpu_check.sh at its tiny CPU size: every step runs and leaves its figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _environment() -> dict[str, str]:
    """The check's environment: this repository importable, this interpreter as `python` and `spkverif`'s."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHON"] = sys.executable
    return env


@pytest.mark.slow
def test_gpu_check_runs_every_step_at_tiny_size_on_the_cpu(tmp_path: Path) -> None:
    env = _environment()
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stdout[-2000:]
    assert summary.count("passed in") == 10 and "every step passed" in summary
    times = (out / "librispeech_gpu_time.txt").read_text()
    assert "gpu.yaml: 5,120,000 chunks of 2 s; measured" in times  # 40 x 1,000 x 128
    assert "gpu_lm.yaml: 640,000 chunks of 6 s; measured" in times  # 5 x 1,000 x 128
    hours = [float(value) for value in re.findall(r"at the \S+ rate: ([0-9.]+) h", times)]
    assert len(hours) == 4 and all(value > 0 for value in hours)
    ls_exp = out / "work" / "ls_exp"
    pretrain = [json.loads(line) for line in (ls_exp / "gpu_pretrain" / "train_log.jsonl").read_text().splitlines()]
    assert pretrain[-1]["global_step"] == 4  # 4 epochs of 1 batch
    workers = (ls_exp / "gpu_workers" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(workers[-1])["global_step"] == 2
    report = json.loads((ls_exp / "report.json").read_text())
    sets = ("dev", "dev_1s", "dev_2s", "test_other")  # the recipe's dev sets (2 readers held out) beside the test
    assert sorted(row["system"] for row in report) == [f"gpu {s}.{m}" for s in sets for m in ("asnorm", "cosine")]
    rows = [line.split() for line in (out / "train_throughput.txt").read_text().splitlines()]
    for model in ("xvector,channels=32", "xvector,channels=48"):  # two options of one network: an experiment each
        assert any(row[:5] == [model, "0", "none", "off", "waveform"] and float(row[5]) > 0 for row in rows), model
    assert "| xvector" in (out / "extract_rtf.txt").read_text()
    report = json.loads((out / "work" / "exp" / "report" / "report.json").read_text())
    assert sorted({row["system"].split()[1] for row in report}) == ["vox1-E", "vox1-H", "vox1-O"]
    log = (out / "work" / "exp" / "check" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["global_step"] == 3
    wav_scp = (out / "work" / "data" / "vox2_dev" / "wav.scp").read_text()
    assert "vox2_audio" in wav_scp and "|" not in wav_scp  # the decoded copy, not pipes


@pytest.mark.slow
def test_gpu_check_reruns_one_step_alone(tmp_path: Path) -> None:
    env = _environment()
    command = ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", "--only"]
    result = subprocess.run([*command, "throughput", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                            timeout=300)  # fmt: skip
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert summary.count("passed in") == 1 and "== train_throughput" in summary and "every step passed" in summary
    assert sorted(path.name for path in (tmp_path / "out").glob("*.txt")) == ["summary.txt", "train_throughput.txt"]
    wrong = subprocess.run([*command, "everything"], capture_output=True, text=True, env=env, timeout=60)
    assert (
        wrong.returncode == 1
        and "--only takes librispeech, throughput, extract or voxceleb, not 'everything'" in wrong.stderr
    )
