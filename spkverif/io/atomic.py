"""Atomic writes: outputs appear whole under their final name or not at all.

A stage killed half-way (crash, Ctrl-C, OOM) leaves a temporary file that is
removed on the way out, never a truncated archive under the real name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _temporary_path(path: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_path(path)
    try:
        with open(temporary, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class AtomicFileGroup:
    """Several files written together (an ark and its scp) and committed together.

    On commit the index files (`index_paths`) are removed first and renamed in
    last, so an interrupted commit can leave a complete archive without its
    index, but never an index pointing into a different archive.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._index: set[Path] = set()

    def open(self, path: str | Path, mode: str = "wb", index: bool = False) -> IO[Any]:
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_path(final)
        self._pending.append((temporary, final))
        if index:
            self._index.add(final)
        return open(temporary, mode, encoding=None if "b" in mode else "utf-8")

    def commit(self) -> None:
        for final in self._index:
            final.unlink(missing_ok=True)
        ordered = sorted(self._pending, key=lambda pair: pair[1] in self._index)
        for temporary, final in ordered:
            os.replace(temporary, final)
        self._pending.clear()

    def abort(self) -> None:
        for temporary, _ in self._pending:
            temporary.unlink(missing_ok=True)
        self._pending.clear()
