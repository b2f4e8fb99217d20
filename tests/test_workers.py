"""Worker pools stop quietly: no `Process ForkPoolWorker-N: Traceback` when a pool ends or is torn down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, env=environment, timeout=600, check=False
    )


@pytest.mark.slow
def test_prepare_mini_prints_no_traceback(tmp_path: Path) -> None:
    # Every forked synthesis worker inherited the CLI's SIGTERM -> KeyboardInterrupt handler, so
    # the pool's teardown printed a traceback for an idle worker at the end of most runs (3 in 5
    # before the fix; the next test shows the mechanism every time).
    out = tmp_path / "mini"
    tiny = "--num-speakers 6 --num-test-speakers 2 --utts-per-speaker 2 --num-trials 4 --min-seconds 0.5"
    done = _run(
        [
            "-m",
            "spkverif",
            "prepare",
            "mini",
            "--out",
            str(out),
            *tiny.split(),
            "--max-seconds",
            "0.6",
            "--jobs",
            "2",
            "-q",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert len((out / "train" / "wav.scp").read_text().splitlines()) == 8


def test_pool_torn_down_by_an_error_is_quiet(tmp_path: Path) -> None:
    # The parent fails while its workers are busy: the pool terminates them (SIGTERM), and they
    # exit without a traceback; the parent's own error is the only line. No maxtasksperchild
    # here: a replacement worker forked by the pool's handler thread at the moment of
    # termination can start holding a lock copied from a parent thread and never exit (a
    # fork-with-threads deadlock of multiprocessing, seen once in CI), which hangs terminate().
    script = (
        "import time\n"
        "from spkverif.cli import install_signal_handlers\n"
        "from spkverif.base.workers import worker_pool\n"
        "install_signal_handlers()\n"
        "with worker_pool(2, 'fork') as pool:\n"
        "    for _ in pool.imap(time.sleep, [0.0] + [30.0] * 4):\n"
        "        raise SystemExit('parent failed')\n"
    )
    done = _run(["-c", script])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["parent failed"], done.stderr


def test_a_worker_that_outlives_sigterm_is_killed_after_the_grace() -> None:
    # Pool.terminate joins its workers without a limit, and a worker can hang on its way out
    # after it has set SIGTERM aside (a futex wait at exit, about one run in 25 of the test
    # above under load). Here every worker ignores SIGTERM inside its task: the parent's error
    # still comes out, alone, within the grace (1 s here) and the kill, not after the 60 s sleeps.
    script = (
        "import signal, time\n"
        "import spkverif.base.workers as workers\n"
        "def stubborn(seconds):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(seconds)\n"
        "workers.TERMINATE_GRACE_SECONDS = 1.0\n"
        "with workers.worker_pool(2, 'fork') as pool:\n"
        "    started = pool.map_async(stubborn, [60.0, 60.0])\n"
        "    time.sleep(1.0)\n"
        "    raise SystemExit('parent failed')\n"
    )
    started = time.monotonic()
    done = _run(["-c", script])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["parent failed"], done.stderr
    assert time.monotonic() - started < 30


def test_a_sigterm_while_a_spawned_worker_shuts_down_is_quiet() -> None:
    # A terminating pool's SIGTERM could land in a worker's shutdown (multiprocessing's finalizers,
    # threading's shutdown, a spawned worker's atexit handlers) and print `Exception ignored in
    # ...` (CI, prepare voxceleb2 --jobs 2 on a full disk). Here each worker sends itself that
    # SIGTERM from a finalizer and from an atexit handler, every time. (A forked worker leaves by
    # os._exit, where only the finalizer runs, and a SystemExit there is caught quietly.)
    script = (
        "from spkverif.base.workers import worker_pool\n"
        "from tests.test_workers import sigterm_at_exit\n"
        "if __name__ == '__main__':\n"
        "    with worker_pool(2, 'spawn', setup=sigterm_at_exit) as pool:\n"
        "        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]\n"
        "    print('done')\n"
    )
    done = _run(["-c", script])
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    assert done.stderr == "", done.stderr


def sigterm_at_exit() -> None:
    """A worker's setup: SIGTERM to itself from a multiprocessing finalizer and an atexit handler,
    both of which run after the worker's own first finalizer."""
    import atexit
    import signal
    import time
    from multiprocessing import util

    def handler() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the signal is handled here, inside the handler

    util.Finalize(None, handler, exitpriority=0)
    atexit.register(handler)
