"""Kaldi table files (`key value...` per line) read with file and line for every error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write


def iter_lines(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, whitespace-split fields) for each non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such file", path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if fields:
                yield number, fields


def read_table(path: str | Path, min_fields: int = 2, max_fields: int | None = None) -> dict[str, list[str]]:
    """Read `key field...` lines into an insertion-ordered dict; duplicates are errors."""
    table: dict[str, list[str]] = {}
    for number, fields in iter_lines(path):
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            expected = f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}"
            raise SpkverifError(f"expected {expected} fields, found {len(fields)}", path, number)
        key = fields[0]
        if key in table:
            raise SpkverifError(f"duplicate key {key!r}", path, number)
        table[key] = fields[1:]
    return table


def read_rest_of_line(path: str | Path) -> dict[str, tuple[int, str]]:
    """Read `key rest of line` (wav.scp style, where the value may hold spaces).

    Returns key -> (line number, value) so later errors can point at the line.
    """
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such file", path)
    table: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            parts = stripped.split(maxsplit=1)
            if len(parts) != 2:
                raise SpkverifError("expected `key value`, found only a key", path, number)
            key, value = parts
            if key in table:
                raise SpkverifError(f"duplicate key {key!r}", path, number)
            table[key] = (number, value)
    return table


def write_table(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write `key value` lines atomically."""
    with atomic_write(path) as handle:
        for key, value in rows:
            handle.write(f"{key} {value}\n")


def kaldi_sort_key(key: str) -> bytes:
    """The order of `LC_ALL=C sort`, which Kaldi tools assume."""
    return key.encode("utf-8")
