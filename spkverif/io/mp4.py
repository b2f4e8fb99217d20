"""Duration of the audio track of an MP4/M4A file, read from its boxes without decoding.

VoxCeleb2 ships a million AAC `.m4a` files; decoding each through ffmpeg just to
learn its length would take hours, while the `moov` box states it in a few bytes.
The edit list (`elst`) is preferred when present, because it is what a decoder
plays: AAC encoders prepend priming samples that the edit list skips.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_MAX_MOOV_BYTES = 64 * 1024 * 1024


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, bytes]]:
    """(type, body) of each box between `start` and `end` of an in-memory buffer."""
    end = len(data) if end is None else end
    boxes = []
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        header = 8
        if size == 1:
            if position + 16 > end:
                raise ValueError("truncated 64-bit box header")
            size = struct.unpack(">Q", data[position + 8 : position + 16])[0]
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise ValueError(f"box {kind!r} claims {size} bytes, past the end of its parent")
        boxes.append((kind, data[position + header : position + size]))
        position += size
    return boxes


def _read_moov(handle: BinaryIO) -> bytes:
    """The body of the top-level `moov` box, skipping `mdat` (the audio) by seeking."""
    while True:
        header = handle.read(8)
        if len(header) < 8:
            raise ValueError("no moov box: not an MP4/M4A file, or a truncated one")
        size, kind = struct.unpack(">I4s", header)
        header_size = 8
        if size == 1:
            size = struct.unpack(">Q", handle.read(8))[0]
            header_size = 16
        if kind == b"moov":
            if size == 0:
                body = handle.read(_MAX_MOOV_BYTES)
            elif size - header_size > _MAX_MOOV_BYTES:
                raise ValueError("moov box larger than 64 MiB")
            else:
                body = handle.read(size - header_size)
                if len(body) != size - header_size:
                    raise ValueError("truncated moov box")
            return body
        if size == 0:
            raise ValueError("no moov box before the end of the file")
        if size < header_size:
            raise ValueError(f"invalid size {size} for box {kind!r}")
        handle.seek(size - header_size, 1)


def _timescale_and_duration(body: bytes) -> tuple[int, int]:
    """From an `mvhd` or `mdhd` body (version 0 or 1)."""
    version = body[0]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", body[20:32])
    else:
        timescale, duration = struct.unpack(">II", body[12:20])
    if timescale == 0:
        raise ValueError("timescale 0")
    return timescale, duration


def _edits(body: bytes) -> list[tuple[int, int]]:
    """(segment duration in movie ticks, media start in media ticks) of each edit that plays media."""
    version = body[0]
    count = struct.unpack(">I", body[4:8])[0]
    entry = 20 if version == 1 else 12
    edits = []
    for index in range(count):
        offset = 8 + index * entry
        if version == 1:
            segment, media_time = struct.unpack(">Qq", body[offset : offset + 16])
        else:
            segment, media_time = struct.unpack(">Ii", body[offset : offset + 8])
        if media_time != -1:
            edits.append((segment, media_time))
    return edits


def mp4_audio_duration(path: str | Path) -> float:
    """Seconds of the first sound track; ValueError when the file is not a readable MP4."""
    try:
        with open(path, "rb") as handle:
            moov = _read_moov(handle)
        return _sound_track_duration(moov)
    except (struct.error, IndexError):
        raise ValueError("malformed MP4 boxes") from None


def _sound_track_duration(moov: bytes) -> float:
    movie_timescale = None
    for kind, body in _boxes(moov):
        if kind == b"mvhd":
            movie_timescale, _ = _timescale_and_duration(body)
    for kind, trak in _boxes(moov):
        if kind != b"trak":
            continue
        children = dict(_boxes(trak))
        mdia = dict(_boxes(children.get(b"mdia", b"")))
        handler = mdia.get(b"hdlr", b"")
        if handler[8:12] != b"soun" or b"mdhd" not in mdia:
            continue
        timescale, duration = _timescale_and_duration(mdia[b"mdhd"])
        edit_box = dict(_boxes(children.get(b"edts", b""))).get(b"elst")
        edits = _edits(edit_box) if edit_box is not None and movie_timescale else []
        if not edits:
            return duration / timescale
        played = sum(segment for segment, _ in edits) / movie_timescale
        if len(edits) == 1:
            # The media after the skipped priming samples, at the audio's own (finer) timescale,
            # unless the edit also trims the end by more than one movie tick.
            after_skip = (duration - edits[0][1]) / timescale
            if abs(after_skip - played) <= 1 / movie_timescale:
                return after_skip
        return played
    raise ValueError("no sound track in the MP4 file")
