"""Kaldi table files (`key value...` per line) read with file and line for every error."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from spkverif.base.errors import SpkverifError
from spkverif.io.atomic import atomic_write


def read_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of every line, decoded as UTF-8.

    The one reader of text tables: a byte sequence that is not UTF-8 is a user
    error at its line (`SpkverifError`), never a `UnicodeDecodeError`. CRLF
    endings and blank lines reach the caller unchanged; `split()` treats the CR
    as white space, so a file written on Windows reads the same. `-` reads standard
    input, and a pipe (`/dev/fd/63` from `<(...)`, a FIFO) is read as it comes, as
    Kaldi's tools read them. Raises `SpkverifError` for a missing path or a directory.
    """
    if str(path) == "-":
        yield from _numbered_lines(sys.stdin.buffer, "-")
        return
    path = Path(path)
    if path.is_dir():
        raise SpkverifError("is a directory, not a file", path)
    if not path.exists():
        raise SpkverifError("no such file", path)
    with open(path, "rb") as handle:
        yield from _numbered_lines(handle, path)


def _numbered_lines(handle: IO[bytes], path: str | Path) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SpkverifError(
                f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})", path, number
            ) from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, whitespace-split fields) for each non-blank line."""
    for number, line in read_text_lines(path):
        fields = line.split()
        if fields:
            yield number, fields


def parse_number(
    text: str,
    what: str,
    path: str | Path | None = None,
    line: int | None = None,
    minimum: float | None = None,
    positive: bool = False,
) -> float:
    """`text` as a finite float, at least `minimum` (or > 0 with `positive`).

    NaN, inf, values that overflow to inf (1e999) and values out of range are
    `SpkverifError`s at `path:line` naming `what`.
    """
    try:
        value = float(text)
    except ValueError:
        raise SpkverifError(f"{what} {text!r} is not a number", path, line) from None
    if not math.isfinite(value):
        raise SpkverifError(f"{what} {text!r} is not a finite number", path, line)
    if positive and value <= 0:
        raise SpkverifError(f"{what} {text!r} must be positive", path, line)
    if minimum is not None and value < minimum:
        raise SpkverifError(f"{what} {text!r} must be at least {minimum:g}", path, line)
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} given twice")
        result[key] = value
    return result


def parse_json(text: str, what: str, path: str | Path | None = None) -> Any:
    """`text` as JSON, strictly: NaN, Infinity and -Infinity (which Python's json accepts),
    numbers that overflow to infinity (1e999) and a key given twice in one object (which
    Python's json resolves silently, the last one winning) are refused.
    Raises `SpkverifError` naming `what` (at the line, for a syntax error)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise SpkverifError(
            f"{what} is not valid JSON: {error.msg} (column {error.colno})", path, error.lineno
        ) from None
    except ValueError as error:
        raise SpkverifError(f"{what}: {error}", path) from None


def read_json(path: str | Path, what: str) -> Any:
    """The JSON file `path`, read as UTF-8 (a bad byte is an error at its line, as in every table)."""
    return parse_json("".join(line for _, line in read_text_lines(path)), what, path)


def locate_key(path: str | Path | None, key: str) -> int | None:
    """The line of `key` (first field) in a table, looked up only when an error needs it."""
    if path is None or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        wanted = key.encode("utf-8")
        for number, line in enumerate(handle, start=1):
            if line.split(maxsplit=1)[:1] == [wanted]:
                return number
    return None


def read_table(path: str | Path, min_fields: int = 2, max_fields: int | None = None) -> dict[str, list[str]]:
    """Read `key field...` lines into an insertion-ordered dict; duplicates are errors."""
    table: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, fields in iter_lines(path):
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            expected = f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}"
            raise SpkverifError(f"expected {expected} fields, found {len(fields)}", path, number)
        key = fields[0]
        if key in table:
            raise SpkverifError(f"duplicate key {key!r} (first on line {first_line[key]})", path, number)
        table[key] = fields[1:]
        first_line[key] = number
    if not table:
        raise SpkverifError("the file is empty", path)
    return table


def read_rest_of_line(path: str | Path) -> dict[str, tuple[int, str]]:
    """Read `key rest of line` (wav.scp style, where the value may hold spaces).

    Returns key -> (line number, value) so later errors can point at the line.
    """
    table: dict[str, tuple[int, str]] = {}
    for number, line in read_text_lines(path):
        stripped = line.strip()
        if not stripped:
            continue
        parts = stripped.split(maxsplit=1)
        if len(parts) != 2:
            raise SpkverifError("expected `key value`, found only a key", path, number)
        key, value = parts
        if key in table:
            raise SpkverifError(f"duplicate key {key!r} (first on line {table[key][0]})", path, number)
        table[key] = (number, value)
    if not table:
        raise SpkverifError("the file is empty", path)
    return table


def write_table(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write `key value` lines atomically."""
    with atomic_write(path) as handle:
        for key, value in rows:
            handle.write(f"{key} {value}\n")


def kaldi_sort_key(key: str) -> bytes:
    """The order of `LC_ALL=C sort`, which Kaldi tools assume."""
    return key.encode("utf-8")
