"""Atomic writes: outputs appear whole under their final name or not at all.

A stage killed half-way (crash, Ctrl-C, OOM) leaves a temporary file that is
removed on the way out, never a truncated archive under the real name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


# What a Kaldi data directory may hold; `atomic_directory` replaces only directories made of these.
DATA_DIR_FILES = frozenset(
    {"wav.scp", "utt2spk", "spk2utt", "segments", "utt2dur", "spk2gender", "reco2dur", "utt2num_frames", "text"}
    | {"feats.scp", "cmvn.scp", "frame_shift", "utt2lang", "vad.scp", "reco2file_and_channel"}
)


def _owned(entry: Path) -> bool:
    return entry.is_file() and (entry.name in DATA_DIR_FILES or entry.name.startswith(("trials", ".")))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary directory beside `path` to fill; on success it replaces `path` whole.

    A data directory is several files that must agree (utt2spk with wav.scp, spk2utt
    with utt2spk), so it is built apart and renamed into place: a reader sees the old
    directory or the new one, never a mix, and an error or kill leaves the old one
    (or nothing) and at most a `.NAME.XXXX.tmp` folder. Raises SpkverifError, before
    writing anything, when `path` exists and holds anything but data-directory files
    (subfolders, audio, a model), so a mistyped `--out` cannot wipe other work.
    """
    from spkverif.errors import SpkverifError

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise SpkverifError("exists and is not a directory", path)
        foreign = sorted(entry.name for entry in path.iterdir() if not _owned(entry))
        if foreign:
            raise SpkverifError(
                f"holds {foreign[0]!r}, which is not a data-directory file; give a new or empty output directory",
                path,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield temporary
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old.tmp", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
