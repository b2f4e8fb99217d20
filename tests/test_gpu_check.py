"""bench/gpu_check.sh at its tiny CPU size: every step runs and leaves its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_step_at_tiny_size_on_the_cpu(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHON"] = sys.executable
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stdout[-2000:]
    assert summary.count("passed in") == 5 and "every step passed" in summary
    rows = [line.split() for line in (out / "train_throughput.txt").read_text().splitlines()]
    assert any(row[:3] == ["xvector", "0", "none"] and float(row[3]) > 0 for row in rows)
    assert "| xvector" in (out / "extract_rtf.txt").read_text()
    report = json.loads((out / "work" / "exp" / "report" / "report.json").read_text())
    assert sorted({row["system"].split()[1] for row in report}) == ["vox1-E", "vox1-H", "vox1-O"]
    log = (out / "work" / "exp" / "check" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["global_step"] == 3
    wav_scp = (out / "work" / "data" / "vox2_dev" / "wav.scp").read_text()
    assert "vox2_audio" in wav_scp and "|" not in wav_scp  # the decoded copy, not pipes
