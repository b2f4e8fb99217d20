"""A stage killed half-way leaves no archive under its final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The child restores Python's SIGINT handler first: a shell without job control (a CI runner,
# `make test &` in a script) starts background jobs with SIGINT ignored, Python then keeps it
# ignored, and the SIGINT case would run the writer to its end (exit 0) instead of testing it.
SLOW_WRITER = """
import signal, sys, time, numpy as np
signal.signal(signal.SIGINT, signal.default_int_handler)
from spkverif.cli import install_signal_handlers
install_signal_handlers()
from spkverif.io.specifiers import ArchiveWriter
with ArchiveWriter(sys.argv[1]) as writer:
    for i in range(10000):
        writer.write(f"utt{i}", np.ones(256, dtype=np.float32))
        if i == 5:
            print("started", flush=True)
        time.sleep(0.01)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_writer_leaves_nothing_that_looks_complete(tmp_path: Path, sig: signal.Signals) -> None:
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, f"ark,scp:{ark},{scp}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline().strip() == b"started"
    if sig == signal.SIGTERM:
        os.kill(process.pid, sig)
    else:
        process.send_signal(sig)
    # communicate, not wait: it drains stderr, so a child with a long traceback cannot block
    # on a full pipe; the bound is generous because a loaded machine starts slowly.
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0, stderr.decode(errors="replace")
    time.sleep(0.1)
    assert not ark.exists() and not scp.exists()
    leftovers = list(tmp_path.iterdir())
    if sig == signal.SIGKILL:
        assert all(path.name.endswith(".tmp") for path in leftovers)
    else:
        assert leftovers == []


def test_ctrl_c_during_extract_exits_130(tmp_path: Path) -> None:
    """The CLI maps KeyboardInterrupt to one line and status 130."""
    from click.testing import CliRunner

    from spkverif.cli import cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    import spkverif.stages.extract

    original = spkverif.stages.extract.extract
    spkverif.stages.extract.extract = interrupt
    try:
        result = CliRunner().invoke(cli, ["extract", "--model", "m.pt", "scp:a.scp", "ark:b.ark"])
    finally:
        spkverif.stages.extract.extract = original
    assert result.exit_code == 130 and "interrupted" in result.stderr
