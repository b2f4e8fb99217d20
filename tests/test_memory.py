"""glibc's malloc kept from giving large freed blocks back (spkverif.base.memory)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

# Allocates, touches and frees 64 MiB three times; prints the minor page faults of the last two rounds.
_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from spkverif.base.memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(16 * 1024 * 1024, dtype=np.float32)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"),
    reason="glibc's malloc tunables: Linux with glibc only",
)
def test_freed_memory_is_reused_without_faulting_it_in_again() -> None:
    """Without the setting each 64 MiB block is faulted in afresh (at least 32 pages a round
    where the kernel gives 2 MiB pages, 16,384 where 4 KiB); with it, the freed block is reused
    and the later rounds fault a tenth of that or less (none here)."""
    default, kept = _faults("default"), _faults("keep")
    assert default >= 64
    assert kept * 10 <= default


def test_the_training_and_extraction_stages_set_it(
    run_cli, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train` (its Trainer, even for --dry-run) and `extract` ask for it before their work."""
    from spkverif.models import build_model
    from spkverif.stages import extract
    from spkverif.training import trainer
    from spkverif.training.checkpoint import model_payload, save_atomic

    calls: list[str] = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append("train"))
    monkeypatch.setattr(extract, "keep_freed_memory", lambda: calls.append("extract"))
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--dry-run",
                     "--speakers-per-batch", "4")  # fmt: skip
    assert result.exit_code == 0 and calls == ["train"]
    save_atomic(model_payload(build_model("xvector", {"channels": 16, "stats_channels": 32, "embedding_dim": 8})),
                tmp_path / "m.pt")  # fmt: skip
    result = run_cli("extract", "-q", "--device", "cpu", "--model", tmp_path / "m.pt", tiny_corpus / "test",
                     f"ark:{tmp_path / 'e.ark'}")  # fmt: skip
    assert result.exit_code == 0 and calls == ["train", "extract"]
