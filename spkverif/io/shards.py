"""Tar shards of utterances (WebDataset's layout) and the list that names them.

A shard is a plain POSIX tar file whose members come in groups sharing a key, one group
an utterance: `<utt>.wav` (16-bit mono PCM) and `<utt>.spk` (the speaker id as text),
as WebDataset and WeSpeaker's `shard.list` expect. A data directory made by `spkverif
shard` holds `shards.list`, one line a shard: `path utterances bytes`; the size lets a
truncated shard be found before training starts, by a `stat`.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.io.tables import iter_lines

SHARD_LIST = "shards.list"


@dataclass(frozen=True)
class Shard:
    """One shard: its path, how many utterances it holds, and its size in bytes."""

    path: str
    utterances: int
    size: int


def read_shard_list(path: str | Path) -> list[Shard]:
    """The shards named by a shards.list; SpkverifError with file:line for a malformed line,
    and naming the shard for one that is missing or whose size differs (truncated)."""
    path = Path(path)
    shards = []
    first_line: dict[str, int] = {}
    for number, fields in iter_lines(path):
        if len(fields) != 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            raise SpkverifError("expected `path utterances bytes`", path, number)
        shard = Shard(fields[0], int(fields[1]), int(fields[2]))
        if shard.path in first_line:
            raise SpkverifError(
                f"shard {shard.path} is listed twice (first on line {first_line[shard.path]})", path, number
            )
        first_line[shard.path] = number
        try:
            size = os.path.getsize(shard.path)
        except OSError:
            raise SpkverifError(f"shard {shard.path} does not exist", path, number) from None
        if size != shard.size:
            raise SpkverifError(
                f"shard {shard.path} is truncated or damaged: {size} bytes, not {shard.size}", path, number
            )
        shards.append(shard)
    if not shards:
        raise SpkverifError("no shards listed", path)
    return shards


def write_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Append one member `name` holding `data` (mode 0644, time 0: the same input gives the same bytes)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """int16 samples (T,) as a WAV file in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def iter_shard(path: str, expected: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(utterance, int16 samples (T,)) of each `.wav` member, read streaming.

    Raises SpkverifError naming the shard when it ends early (a tar cut at a member
    boundary reads as a shorter archive, so `expected`, the count in shards.list, is
    checked at the end) or a member is not audio."""
    count = 0
    try:
        with tarfile.open(path, mode="r|") as archive:
            for member in archive:
                key, _, extension = member.name.partition(".")
                if extension != "wav" or not member.isfile():
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                data = handle.read()
                if len(data) != member.size:
                    raise EOFError("unexpected end of data")
                samples, _ = soundfile.read(io.BytesIO(data), dtype="int16")
                count += 1
                yield key, samples
    except (tarfile.TarError, EOFError, soundfile.LibsndfileError, OSError) as error:
        raise SpkverifError(f"shard is truncated or damaged: {error}", path) from None
    if expected is not None and count != expected:
        raise SpkverifError(f"shard is truncated or damaged: {count} utterances, not {expected}", path)
