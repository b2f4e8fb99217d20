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
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import get_context, util
from multiprocessing.pool import Pool

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
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
