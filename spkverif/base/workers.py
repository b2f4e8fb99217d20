"""Worker processes: the one pool every stage uses, whose workers stop quietly.

A worker forked from the CLI inherits its SIGTERM handler (SIGTERM unwinds like Ctrl-C:
KeyboardInterrupt), and multiprocessing terminates a pool's workers with SIGTERM, so every
terminated worker printed `Process ForkPoolWorker-N: Traceback ... KeyboardInterrupt`.
Here a worker's SIGTERM raises SystemExit instead (multiprocessing's bootstrap exits quietly
on it, and it still unwinds `atomic_write`, so a temporary file is removed) and SIGINT is
ignored (Ctrl-C reaches the whole process group; the parent alone decides, and terminates
the pool). A pool that finished its work is closed and joined, not terminated.

A terminating pool first tells its workers to stop, then sends SIGTERM to those still alive,
so SIGTERM can land in a worker that has left its task loop and is shutting down: in
multiprocessing's finalizers, `threading._shutdown` or (spawned workers leave through
`sys.exit`) an atexit handler. A SystemExit raised there is printed as `Exception ignored
in ...` with a traceback (seen in CI, in `prepare voxceleb2 --jobs 2` stopped by a full
disk). So the first of a worker's exit finalizers makes it ignore SIGTERM: nothing is left
to unwind by then.

A worker can also hang on its way out (a futex wait in its exit, after SIGTERM is ignored:
`tests/test_workers.py` reproduced it in about one run of 25 under load), and
`Pool.terminate` joins every worker without a limit. So a pool left by an exception is
terminated from a helper thread that the caller waits for `TERMINATE_GRACE_SECONDS`; a
worker still alive then is killed (SIGKILL, which no handler sees), and the wait ends.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import get_context, util
from multiprocessing.pool import Pool

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 10.0
"""How long a pool left by an exception may take to stop before its remaining workers are killed."""

JOBS = 4
"""Threads or processes a stage runs unless told (`--jobs`): of a preparer, reading audio headers; of a decoder."""


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(1)


def quiet_worker(setup: Callable[[], None] | None = None) -> None:
    """Initialiser of every worker process: SIGTERM raises SystemExit, SIGINT is ignored;
    then `setup` (a module-level function, so that a spawned worker can unpickle it), if any.
    A worker starts with SIGTERM blocked (`worker_pool`), so a SIGTERM that arrives before
    this handler is installed waits for it instead of reaching the parent's inherited one.
    Once the task loop has ended, the process's first exit finalizer (multiprocessing runs them
    as soon as the worker returns, before threads are joined and atexit handlers run) sets
    SIGTERM to be ignored."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if setup is not None:
        setup()
    util.Finalize(None, signal.signal, args=(signal.SIGTERM, signal.SIG_IGN), exitpriority=sys.maxsize)


@contextmanager
def worker_pool(
    processes: int,
    start_method: str,
    setup: Callable[[], None] | None = None,
    maxtasksperchild: int | None = None,
) -> Iterator[Pool]:
    """A multiprocessing pool of `processes` workers started by `start_method` ("fork" or
    "spawn"), each initialised by `quiet_worker(setup)`. Leaving the block normally closes the
    pool and waits for its workers to exit; leaving it by an exception terminates them (quietly).
    """
    # SIGTERM stays blocked while the pool starts: its first workers and its handler threads
    # (which start the replacement workers) inherit the mask, so no worker can be terminated
    # between fork and `quiet_worker` (it would run the CLI's handler and print a traceback).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pool = get_context(start_method).Pool(
            processes, initializer=quiet_worker, initargs=(setup,), maxtasksperchild=maxtasksperchild
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    try:
        yield pool
    except BaseException:
        terminate_pool(pool)
        raise
    pool.close()
    pool.join()


def terminate_pool(pool: Pool, grace: float | None = None) -> None:
    """`pool.terminate()` (SIGTERM to each worker, then joining them), waited for at most
    `grace` seconds (None: `TERMINATE_GRACE_SECONDS` as it is at the call); then every worker
    still alive is killed (SIGKILL) and the terminating thread is given `grace` seconds more.
    A pool that still has not stopped is left to the interpreter's exit (multiprocessing's own
    finalizer), so the caller's error is never held up for ever. `pool._pool` is
    multiprocessing's list of the worker processes."""
    grace = TERMINATE_GRACE_SECONDS if grace is None else grace
    stopper = threading.Thread(target=pool.terminate, name="terminate-pool", daemon=True)
    stopper.start()
    stopper.join(grace)
    if not stopper.is_alive():
        return
    for process in list(pool._pool):  # type: ignore[attr-defined]
        if process.exitcode is None:
            logger.debug("worker %s did not stop on SIGTERM within %g s: killed", process.pid, grace)
            process.kill()
    stopper.join(grace)
