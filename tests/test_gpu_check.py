"""bench/gpu_check.sh at its tiny CPU size: every step runs and leaves its figures."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "network", "batch", "compile", "channels-last", "CUDA graphs", "chunks/s", "× eager", "data wait",
    "peak GiB", "GFLOP/chunk", "TFLOP/s", "MFU",
)  # fmt: skip


def _environment() -> dict[str, str]:
    """The check's environment: this repository importable, this interpreter as `python` and `spkverif`'s."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHON"] = sys.executable
    env.pop("OUT", None)
    return env


def _check(tmp_path: Path, *options: str, timeout: int = 1800) -> tuple[Path, str]:
    """Run the tiny check with `options`; its OUT folder and summary, having asserted that every step passed."""
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", "--work", str(tmp_path / "work"), *options, str(out)],
        capture_output=True, text=True, env=_environment(), timeout=timeout,
    )  # fmt: skip
    summary = (out / "summary.txt").read_text()
    assert result.returncode == 0 and "every step passed" in summary, summary + result.stdout[-3000:]
    return out, summary


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.slow
def test_the_throughput_table_of_three_networks_at_two_batch_sizes(tmp_path: Path) -> None:
    out, summary = _check(tmp_path, "--only", "throughput")
    steps = [line.split()[1] for line in summary.splitlines() if line.startswith("== ")]
    assert steps == [f"throughput_{network}" for network in ("resnet34", "ecapa_tdnn", "campplus")]
    markdown = (out / "throughput.md").read_text()
    assert markdown.splitlines()[0] == "| " + " | ".join(COLUMNS) + " |"
    document = json.loads((out / "throughput.json").read_text())
    assert document["columns"] == list(COLUMNS)
    rows = document["rows"]
    # ResNet34 eager (today's training) and compiled; the others compiled; each at batch 2 and 4
    assert [(row["model"].split(",")[0], row["batch"], row["compile"]) for row in rows] == [
        ("resnet34", 2, "off"), ("resnet34", 2, "reduce-overhead"), ("resnet34", 4, "off"),
        ("resnet34", 4, "reduce-overhead"), ("ecapa_tdnn", 2, "reduce-overhead"), ("ecapa_tdnn", 4, "reduce-overhead"),
        ("campplus", 2, "reduce-overhead"), ("campplus", 4, "reduce-overhead"),
    ]  # fmt: skip
    for row in rows:
        for key in ("samples_per_s", "peak_gib", "gflop_per_chunk", "tflop_per_s", "mfu", "peak_tflop_per_s"):
            assert _positive(row[key]), (key, row)
        assert 0 <= row["data_wait_fraction"] < 1, row
        assert row["cuda_graphs"] == "off" and row["device"] == "cpu"  # graphs on CUDA only
        # channels-last for the 2-D networks' compiled rows alone
        expected = "on" if row["compile"] != "off" and not row["model"].startswith("ecapa") else "off"
        assert row["channels_last"] == expected, row
    compiled = [row for row in rows if row["model"].startswith("resnet34") and row["compile"] != "off"]
    assert all(_positive(row["ratio"]) for row in compiled)
    # FLOPs a chunk are the network's: the same at both batch sizes, and ResNet34's the largest
    flops = {(row["model"].split(",")[0], row["gflop_per_chunk"]) for row in rows}
    assert len(flops) == 3 and max(flops, key=lambda pair: pair[1])[0] == "resnet34"
    projections = document["projections"]
    assert [projection["batch"] for projection in projections] == [2, 4]
    for projection in projections:
        assert projection["utterances"] == 1_092_009 and projection["schedule_chunks"] == 150 * 1000 * 128
        assert _positive(projection["epoch_hours"]) and _positive(projection["schedule_hours"])
    assert len(re.findall(r"a VoxCeleb2 epoch \(1,092,009 utterances", markdown)) == 2
    with tarfile.open(out / "logs.tar.gz") as logs:
        assert "logs/throughput_resnet34.txt" in logs.getnames()


@pytest.mark.slow
def test_the_voxceleb_recipe_through_its_torchrun_path(tmp_path: Path) -> None:
    out, summary = _check(tmp_path, "--only", "voxceleb")
    assert summary.count("passed in") == 3 and "throughput" not in summary
    work = tmp_path / "work"
    report = json.loads((work / "exp" / "report" / "report.json").read_text())
    assert sorted({row["system"].split()[1] for row in report}) == ["vox1-E", "vox1-H", "vox1-O"]
    log = (work / "exp" / "check" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["global_step"] == 3
    wav_scp = (work / "data" / "vox2_dev" / "wav.scp").read_text()
    assert "vox2_audio" in wav_scp and "|" not in wav_scp  # the decoded copy, not pipes
    assert sorted(path.name for path in out.iterdir()) == ["logs.tar.gz", "summary.txt"]


@pytest.mark.slow
def test_the_opt_in_librispeech_and_extraction_steps(tmp_path: Path) -> None:
    _, summary = _check(tmp_path, "--only", "librispeech,extract")
    assert summary.count("passed in") == 6 and "throughput" not in summary and "recipe_stage" not in summary
    logs = tmp_path / "work" / "logs"
    times = (logs / "librispeech_gpu_time.txt").read_text()
    assert "gpu.yaml: 5,120,000 chunks of 2 s; measured" in times  # 40 x 1,000 x 128
    assert "gpu_lm.yaml: 640,000 chunks of 6 s; measured" in times  # 5 x 1,000 x 128
    hours = [float(value) for value in re.findall(r"at the \S+ rate: ([0-9.]+) h", times)]
    assert len(hours) == 4 and all(value > 0 for value in hours)
    ls_exp = tmp_path / "work" / "ls_exp"
    pretrain = [json.loads(line) for line in (ls_exp / "gpu_pretrain" / "train_log.jsonl").read_text().splitlines()]
    assert pretrain[-1]["global_step"] == 4  # 4 epochs of 1 batch
    workers = (ls_exp / "gpu_workers" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(workers[-1])["global_step"] == 2
    report = json.loads((ls_exp / "report.json").read_text())
    sets = ("dev", "dev_1s", "dev_2s", "test_other")  # the recipe's dev sets (2 readers held out) beside the test
    assert sorted(row["system"] for row in report) == [f"gpu {s}.{m}" for s in sets for m in ("asnorm", "cosine")]
    assert "| xvector" in (logs / "extract_rtf.txt").read_text()


def test_gpu_check_refuses_an_unknown_step(tmp_path: Path) -> None:
    wrong = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", "--only", "throughput,everything", str(tmp_path)],
        capture_output=True, text=True, env=_environment(), timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 1 and "--only takes throughput, voxceleb, librispeech or extract" in wrong.stderr
    assert "not 'everything'" in wrong.stderr
