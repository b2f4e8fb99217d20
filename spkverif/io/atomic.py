"""Atomic writes: outputs appear whole under their final name or not at all.

A stage killed half-way (crash, Ctrl-C, OOM) leaves a temporary file that is
removed on the way out, never a truncated archive under the real name. A write
the machine refuses (full disk, file-size limit, read-only file system, no
permission, a path under a regular file) is a `SpkverifError` naming the output
(`PATH: no space left on device`), after the temporary file is removed and with
the previous output, where there was one, left as it was.

Modes are the ones a plain `open` would give: a new file gets 0666 less the
umask (0644 under umask 022), a new directory 0777 less the umask, and a file or
data directory written again keeps the mode it had. Only regular files are
written through a temporary file: `-` is standard output, and a path that exists
and is not a regular file (`/dev/stdout`, `/dev/fd/N`, a named pipe) is written in
place, as Kaldi's tools write them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from spkverif.base.errors import SpkverifError, os_error


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (`/proc/self/status`).

    Elsewhere it is read by setting and restoring it, which another thread creating a
    file at that instant could see.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_mode(path: Path, directory: bool) -> int:
    """The mode `path` keeps (it exists) or gets (it is new) once written."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return (0o777 if directory else 0o666) & ~current_umask()


def writes_in_place(path: str | Path) -> bool:
    """True for `-`, for a path under /dev or /proc (/dev/stdout, /dev/fd/N, /proc/self/fd/N:
    where standard output goes to a file, renaming over the name would replace the link),
    and for a path that exists and is not a regular file or directory (a FIFO)."""
    if str(path) == "-":
        return True
    if Path(os.path.abspath(path)).parts[1:2] in (("dev",), ("proc",)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _ours(error: OSError, *paths: Path) -> bool:
    """Whether an OSError raised while writing is about the output (no file named, or one of `paths`)."""
    return error.filename is None or str(error.filename) in {str(path) for path in paths}


def _temporary_path(path: Path) -> Path:
    """A new empty file `.NAME.XXXX.tmp` beside `path`, with the mode `path` will have."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise os_error(error, path) from None
    try:
        os.fchmod(handle, _new_mode(path, directory=False))
    finally:
        os.close(handle)
    return Path(name)


def _through_link(path: Path) -> Path:
    """The file a symbolic link points to (itself, for any other path): the target is replaced, the link stays."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _make_parent(path: Path) -> None:
    """Make `path`'s folder (and its parents); a file in the way is `PATH: not a directory`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise os_error(NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), path) from None
    except OSError as error:
        raise os_error(error, path) from None


def _standard_output(mode: str) -> IO[Any]:
    return sys.stdout.buffer if "b" in mode else sys.stdout


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; rename it over `path` only on success.

    `-` yields standard output and a non-regular file (`/dev/stdout`, `/dev/fd/N`) is
    opened in place. Raises `SpkverifError` naming `path` when the machine refuses the
    write; the temporary file is gone by then, and an earlier `path` is untouched.
    """
    if str(path) == "-":
        stream = _standard_output(mode)
        yield stream
        stream.flush()
        return
    if writes_in_place(path):
        try:
            with open(path, mode, encoding=None if "b" in mode else encoding) as handle:
                yield handle
        except OSError as error:
            raise (os_error(error, path) if _ours(error, Path(path)) else error) from None
        return
    path = _through_link(Path(path))
    _make_parent(path)
    temporary: Path | None = None
    try:
        temporary = _temporary_path(path)
        with open(temporary, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if _ours(error, path, temporary or path, path.parent):
            raise os_error(error, path) from None
        raise
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise


class AtomicFileGroup:
    """Several files written together (an ark and its scp) and committed together.

    On commit every file is flushed, synced and closed before any is renamed; the
    index files (`index=True`) are removed first and renamed in last, so an
    interrupted commit can leave a complete archive without its index, but never an
    index pointing into a different archive. A write, flush or close the machine
    refuses aborts the group (every temporary file removed) and raises
    `SpkverifError` naming the final path.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, IO[Any]]] = []
        self._in_place: list[tuple[Path, IO[Any]]] = []
        self._index: set[Path] = set()

    def open(self, path: str | Path, mode: str = "wb", index: bool = False) -> IO[Any]:
        """A temporary file to fill in place of `path`, renamed over it on `commit`."""
        final = Path(path)
        if writes_in_place(final):  # /dev/stdout, a FIFO: written as it comes, nothing to rename
            try:
                handle = open(final, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 - closed by commit/abort
            except OSError as error:
                self.abort()
                raise os_error(error, final) from None
            self._in_place.append((final, handle))
            return handle
        final = _through_link(final)
        try:
            _make_parent(final)
            temporary = _temporary_path(final)
        except BaseException:  # SpkverifError naming `final`, from either
            self.abort()
            raise
        handle = open(temporary, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 - closed by commit/abort
        self._pending.append((temporary, final, handle))
        if index:
            self._index.add(final)
        return handle

    def commit(self) -> None:
        """Close every file and rename each over its final path (indexes last)."""
        current: Path | None = None
        try:
            for final, handle in self._in_place:
                current = final
                handle.close()
            self._in_place.clear()
            for _, final, handle in self._pending:
                current = final
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
            for final in self._index:
                current = final
                final.unlink(missing_ok=True)
            ordered = sorted(self._pending, key=lambda entry: entry[1] in self._index)
            for temporary, final, _ in ordered:
                current = final
                os.replace(temporary, final)
        except OSError as error:
            self.abort()
            raise os_error(error, current) from None
        except BaseException:
            self.abort()
            raise
        self._pending.clear()

    def abort(self) -> None:
        """Close (errors ignored) and remove every temporary file."""
        for _, handle in self._in_place:
            with contextlib.suppress(OSError):
                handle.close()
        self._in_place.clear()
        for temporary, _, handle in self._pending:
            with contextlib.suppress(OSError):
                handle.close()
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
    _make_parent(path)
    temporary: Path | None = None
    old: Path | None = None
    try:
        try:
            temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        except OSError as error:
            raise os_error(error, path) from None
        os.chmod(temporary, _new_mode(path, directory=True))
        yield temporary
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old.tmp", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        if old is not None:
            with contextlib.suppress(OSError):  # the old directory goes back where it was
                if (old / path.name).exists() and not path.exists():
                    os.replace(old / path.name, path)
            if not (old / path.name).exists():
                shutil.rmtree(old, ignore_errors=True)
        if isinstance(error, OSError) and _ours(error, path, path.parent, temporary or path):
            raise os_error(error, path) from None
        raise
