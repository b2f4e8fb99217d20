"""Kaldi rspecifiers and wspecifiers for vectors and matrices, through kaldiio.

Reading accepts what Kaldi accepts: `ark:file`, `ark:-`, `ark:cmd |`, `scp:file`,
with options such as `p`, `s`, `cs`. Writing supports `ark:file`, `ark,t:file`,
`ark,scp:file.ark,file.scp` (either order), `ark:-` to stdout and `ark:| cmd`.
Files are written atomically: a reader never sees a half-written archive.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import kaldiio
import kaldiio.utils
import numpy as np

from spkverif.base.errors import SpkverifError, os_error
from spkverif.io.atomic import AtomicFileGroup
from spkverif.io.tables import locate_key, read_text_lines

_OPTIONS = {"t", "b", "f", "nf", "o", "no", "s", "ns", "cs", "ncs", "p", "np"}


@dataclass(frozen=True)
class Specifier:
    """A parsed r/wspecifier: the archive and/or index paths and the options that matter here."""

    spec: str
    ark: str | None
    scp: str | None
    text: bool
    flush: bool
    permissive: bool


def parse_specifier(spec: str, writing: bool) -> Specifier:
    kind = "wspecifier" if writing else "rspecifier"
    usage = "ark,scp:out.ark,out.scp or ark:- " if writing else "scp:file.scp, ark:file.ark or ark:- "
    if ":" not in spec:
        raise SpkverifError(f"{spec!r} is not a Kaldi {kind} (expected e.g. {usage.strip()})")
    head, tail = spec.split(":", 1)
    options = [option.strip() for option in head.split(",")]
    targets = [option for option in options if option in ("ark", "scp")]
    unknown = [option for option in options if option not in _OPTIONS and option not in ("ark", "scp")]
    if unknown or not targets or len(set(targets)) != len(targets):
        raise SpkverifError(f"{spec!r} is not a Kaldi {kind} (expected e.g. {usage.strip()})")
    paths = tail.split(",", 1) if len(targets) == 2 else [tail]
    if len(paths) != len(targets) or not all(paths):
        raise SpkverifError(f"{spec!r} names {len(targets)} kinds of file but gives {len(paths)} paths")
    files = dict(zip(targets, paths, strict=False))
    if writing and "ark" not in files:
        raise SpkverifError(f"{spec!r}: writing needs an ark (e.g. ark,scp:out.ark,out.scp)")
    if not writing and len(files) == 2:
        raise SpkverifError(f"{spec!r}: an rspecifier reads either an ark or an scp, not both")
    return Specifier(
        spec=spec,
        ark=files.get("ark"),
        scp=files.get("scp"),
        text="t" in options,
        flush="f" in options,
        permissive="p" in options,
    )


def _source_path(spec: Specifier) -> str:
    return spec.scp if spec.scp is not None else str(spec.ark)


def _is_pipe(path: str) -> bool:
    return path.strip() == "-" or path.rstrip().endswith("|") or path.lstrip().startswith("|")


def _check_scp(path: str) -> dict[str, str]:
    """An scp index: UTF-8 lines `key ark:offset` (or `key file`), two fields each, no key twice.
    Returns key -> location."""
    seen: dict[str, int] = {}
    locations: dict[str, str] = {}
    for number, line in read_text_lines(path):
        fields = line.split()
        if not fields:
            raise SpkverifError("empty line (an scp has none; Kaldi's readers refuse them too)", path, number)
        if len(fields) != 2:
            raise SpkverifError(f"expected `key archive:offset`, found {len(fields)} fields", path, number)
        if fields[0] in seen:
            raise SpkverifError(f"duplicate key {fields[0]!r} (first on line {seen[fields[0]]})", path, number)
        seen[fields[0]] = number
        locations[fields[0]] = fields[1]
    return locations


class _ExactReader:
    """A binary stream whose `read(n)` of more than one byte gives all n bytes or raises `EOFError`:
    kaldiio returns a shorter vector from a truncated archive instead of failing."""

    def __init__(self, handle: IO[bytes]):
        self.handle = handle

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if size is not None and size > 1 and len(data) < size:
            raise EOFError(f"the archive ends {size - len(data)} byte(s) inside an entry (truncated?)")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


_BINARY_VECTOR = struct.Struct("<2s3sbi")  # "\0B", "FV " or "DV ", size byte 4, int32 dimension


class _DeclaredSizes:
    """The dimension a binary Kaldi vector declares at `ark:offset`, to compare with what was read."""

    def __init__(self) -> None:
        self.handles: dict[str, IO[bytes]] = {}

    def __call__(self, location: str) -> int | None:
        ark, _, offset = location.rpartition(":")
        if not ark or not offset.isdigit() or _is_pipe(ark):
            return None
        if ark not in self.handles:
            self.handles[ark] = open(ark, "rb")  # noqa: SIM115 - closed by close()
        handle = self.handles[ark]
        handle.seek(int(offset))
        head = handle.read(_BINARY_VECTOR.size)
        if len(head) < _BINARY_VECTOR.size:
            return None
        binary, token, _, size = _BINARY_VECTOR.unpack(head)
        return size if binary == b"\0B" and token in (b"FV ", b"DV ") else None

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def read_vectors(rspecifier: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (key, array) pairs from an rspecifier; failures become one-line user errors."""
    spec = parse_specifier(rspecifier, writing=False)
    source = _source_path(spec)
    if not _is_pipe(source) and not Path(source).exists():
        raise SpkverifError("no such file", source)
    if Path(source).is_dir():
        raise SpkverifError("is a directory, not an archive", source)
    streamed = _is_pipe(source) or not Path(source).is_file()  # `-`, `cmd |`, /dev/fd/N: read once, in order
    if spec.scp is None and not streamed and _is_text_ark(source):
        yield from read_text_ark(source)
        return
    try:
        if spec.scp is None:
            yield from _read_binary_ark(source)
        elif streamed:
            yield from _read_scp(source, {}, spec.permissive)
        else:
            yield from _read_scp(source, _check_scp(source), spec.permissive)
    except SpkverifError:
        raise
    # kaldiio signals a malformed archive with any of these, asserts included
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        EOFError,
        RuntimeError,
        UnicodeError,
        struct.error,
        AssertionError,
    ) as error:
        detail = str(error) or type(error).__name__
        raise SpkverifError(f"cannot read archive (truncated or not a Kaldi archive?): {detail}", source) from None


def _read_binary_ark(source: str) -> Iterator[tuple[str, np.ndarray]]:
    """An archive (file, `-` or `cmd |`) through kaldiio, every read of an entry exact."""
    with kaldiio.utils.open_like_kaldi(source, "rb") as handle:
        for key, value in kaldiio.load_ark(_ExactReader(handle)):
            if isinstance(value, tuple):
                raise SpkverifError(f"entry {key!r} holds audio, not a vector or matrix", source)
            yield key, np.asarray(value)


def _read_scp(source: str, locations: dict[str, str], permissive: bool) -> Iterator[tuple[str, np.ndarray]]:
    """An scp index through kaldiio; a binary vector shorter than it declares is a truncated archive."""
    declared = _DeclaredSizes()
    try:
        with kaldiio.ReadHelper(f"scp{',p' if permissive else ''}:{source}") as reader:
            for key, value in reader:
                if isinstance(value, tuple):
                    raise SpkverifError(f"entry {key!r} holds audio, not a vector or matrix", source)
                array = np.asarray(value)
                size = declared(locations[key]) if key in locations else None
                if size is not None and array.ndim == 1 and array.size != size:
                    raise SpkverifError(
                        f"entry {key!r} holds {array.size} of the {size} values it declares (a truncated archive?)",
                        source,
                        locate_key(source, key),
                    )
                yield key, array
    finally:
        declared.close()


SHOWN_KEYS = 3


def _is_text_ark(path: str) -> bool:
    """Kaldi's binary archives hold `key \\0B` at the start; anything else is read as text."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    space = head.find(b" ")
    return space < 0 or head[space + 1 : space + 3] != b"\0B"


def _floats(values: list[str], path: str, line: int) -> np.ndarray:
    try:
        wide = np.array([float(value) for value in values], dtype=np.float64)
    except ValueError:
        bad = next(value for value in values if not _is_float(value))
        raise SpkverifError(f"{bad!r} is not a number", path, line) from None
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    overflow = np.isfinite(wide) & ~np.isfinite(narrow)
    if overflow.any():
        raise SpkverifError(f"{wide[overflow][0]:g} does not fit a 32-bit float", path, line)
    return narrow


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_text_ark(path: str) -> Iterator[tuple[str, np.ndarray]]:
    """A Kaldi text archive (`ark,t:`) of vectors `key [ v ... ]` and matrices `key [` rows `]`.

    Read here rather than by kaldiio so that every problem is a `SpkverifError` at its
    line: a value that is not a number or overflows float32, a missing `]` (a truncated
    file), rows of unequal length, bytes that are not UTF-8. Blank lines and CRLF
    endings read as nothing. NaN and inf are read as such; callers refuse them by key.
    Yields (key, float32 array of shape (D,) or (R, D)).
    """
    lines = read_text_lines(path)
    for number, line in lines:
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or fields[1] != "[":
            raise SpkverifError("expected `key [ values ]` (a Kaldi text archive)", path, number)
        key, rest = fields[0], fields[2:]
        if rest:
            if rest[-1] != "]":
                raise SpkverifError(f"vector {key!r} does not end with `]` on its line (truncated?)", path, number)
            yield key, _floats(rest[:-1], path, number)
            continue
        rows: list[np.ndarray] = []
        first = number
        closed = False
        for number, line in lines:  # the matrix's rows: the same line iterator goes on
            fields = line.split()
            closed = bool(fields) and fields[-1] == "]"
            values = fields[:-1] if closed else fields
            if values:
                rows.append(_floats(values, path, number))
                if len(rows[-1]) != len(rows[0]):
                    raise SpkverifError(f"row of {len(rows[-1])} values in a matrix of {len(rows[0])}", path, number)
            if closed:
                break
        if not closed:
            raise SpkverifError(f"matrix {key!r} has no closing `]` (truncated?)", path, first)
        yield key, np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def _where(spec: Specifier, key: str) -> tuple[str, int | None]:
    """The file to name for an entry: its scp line when read through an scp, else the archive."""
    source = _source_path(spec)
    return source, locate_key(source, key) if spec.scp is not None and not _is_pipe(source) else None


def load_vectors(rspecifier: str) -> tuple[list[str], np.ndarray]:
    """Read every vector of an rspecifier into (keys, float32 matrix of shape (N, D)).

    Raises `SpkverifError` for an entry that is a matrix (e.g. features) rather than a
    vector, a dimension unlike the first vector's, a key twice, an empty archive, and
    vectors holding NaN or inf or of length zero (the first few keys named): no back end
    can score those.
    """
    spec = parse_specifier(rspecifier, writing=False)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    for key, value in read_vectors(rspecifier):
        if value.ndim != 1:
            raise SpkverifError(
                f"entry {key!r} is a matrix of shape {value.shape}, not a vector (features, not embeddings?)",
                *_where(spec, key),
            )
        vector = np.asarray(value, dtype=np.float32)
        if key in seen:
            raise SpkverifError(f"duplicate key {key!r}", *_where(spec, key))
        if rows and vector.shape != rows[0].shape:
            raise SpkverifError(
                f"vector {key!r} has dimension {vector.size}, the first had {rows[0].size}", *_where(spec, key)
            )
        seen.add(key)
        keys.append(key)
        rows.append(vector)
    if not rows:
        raise SpkverifError("no vectors in the archive", _source_path(spec))
    matrix = np.stack(rows)
    _check_scorable(keys, matrix, spec)
    return keys, matrix


def _check_scorable(keys: list[str], matrix: np.ndarray, spec: Specifier) -> None:
    """Refuse vectors with NaN/inf (or too large to square in float32) or of length zero, naming their keys."""
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    for bad, what in ((~finite, "hold NaN or inf"), (finite & (norms == 0), "have length zero (all zeros)")):
        if bad.any():
            named = [keys[i] for i in np.flatnonzero(bad)[:SHOWN_KEYS]]
            source, line = _where(spec, named[0])
            more = ", ..." if bad.sum() > SHOWN_KEYS else ""
            raise SpkverifError(
                f"{int(bad.sum())} vector(s) {what} and cannot be scored: {', '.join(named)}{more}", source, line
            )


class ArchiveWriter:
    """Write arrays to a wspecifier; files appear only when the writer closes cleanly.

    Use as a context manager: an exception (or Ctrl-C) inside the block discards
    the temporary files, so no archive that looks complete is ever left behind.
    """

    def __init__(self, wspecifier: str):
        self.spec = parse_specifier(wspecifier, writing=True)
        self._group = AtomicFileGroup()
        self._process: subprocess.Popen[bytes] | None = None
        self._scp: IO[str] | None = None
        self._keys: set[str] = set()
        ark = str(self.spec.ark)
        if ark == "-":
            if self.spec.scp is not None:
                raise SpkverifError(f"{wspecifier!r}: an scp cannot index an archive written to stdout")
            self._ark: IO[bytes] = sys.stdout.buffer
        elif ark.lstrip().startswith("|"):
            if self.spec.scp is not None:
                raise SpkverifError(f"{wspecifier!r}: an scp cannot index an archive written to a pipe")
            self._process = subprocess.Popen(ark.lstrip()[1:], shell=True, stdin=subprocess.PIPE)
            assert self._process.stdin is not None
            self._ark = self._process.stdin
        else:
            self._ark = self._group.open(ark, "wb")
            if self.spec.scp is not None:
                self._scp = self._group.open(self.spec.scp, "w", index=True)

    def write(self, key: str, array: np.ndarray) -> None:
        if not key or any(character.isspace() for character in key):
            raise SpkverifError(f"key {key!r} is empty or holds white space", self.spec.spec)
        if key in self._keys:
            raise SpkverifError(f"key {key!r} written twice", self.spec.spec)
        self._keys.add(key)
        where = self.spec.ark  # the file being written, named if the machine refuses the write
        try:
            offset = self._ark.tell() if self._scp is not None else 0
            kaldiio.save_ark(self._ark, {key: np.ascontiguousarray(array)}, text=self.spec.text)
            if self._scp is not None:
                where = self.spec.scp
                self._scp.write(f"{key} {self.spec.ark}:{offset + len(key.encode('utf-8')) + 1}\n")
            if self.spec.flush:
                where = self.spec.ark
                self._ark.flush()
        except OSError as error:
            if self._process is not None or self._ark is sys.stdout.buffer:
                raise  # a pipe's reader closed it: the CLI's broken-pipe line
            self._group.abort()
            raise os_error(error, where) from None

    def __setitem__(self, key: str, array: np.ndarray) -> None:
        self.write(key, array)

    def close(self, commit: bool = True) -> None:
        if self._ark is sys.stdout.buffer:
            self._ark.flush()
            return
        if self._process is not None:
            self._ark.close()
            if self._process.wait() != 0 and commit:
                raise SpkverifError(f"output command exited with status {self._process.returncode}", self.spec.spec)
            return
        if commit:
            self._group.commit()
        else:
            self._group.abort()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        self.close(commit=exc_type is None)
