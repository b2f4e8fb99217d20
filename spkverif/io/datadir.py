"""Kaldi data directories: wav.scp, [segments], utt2spk, spk2utt, [utt2dur].

`validate_data_dir` plays the part of Kaldi's `utils/validate_data_dir.sh`:
it collects every problem with its file and line instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from spkverif.errors import SpkverifError
from spkverif.io.tables import kaldi_sort_key, read_rest_of_line, write_table


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording, in seconds; `end` None means to the end of the file."""

    recording: str
    start: float
    end: float | None


@dataclass
class DataDir:
    """An in-memory Kaldi data directory."""

    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, Segment] | None = None
    utt2dur: dict[str, float] | None = None
    path: Path | None = None
    spk2utt: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.spk2utt = spk2utt_from_utt2spk(self.utt2spk)

    @property
    def utterances(self) -> list[str]:
        return list(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return list(self.spk2utt)

    def audio_spec(self, utt: str) -> tuple[str, float, float | None]:
        """The wav.scp entry behind an utterance, with the segment bounds in seconds."""
        if self.segments is None:
            return self.wav_scp[utt], 0.0, None
        segment = self.segments[utt]
        return self.wav_scp[segment.recording], segment.start, segment.end

    def save(self, path: str | Path) -> None:
        """Write every file in Kaldi's sorted order, each atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_table(path / "wav.scp", _sorted_rows(self.wav_scp))
        write_table(path / "utt2spk", _sorted_rows(self.utt2spk))
        write_table(
            path / "spk2utt",
            ((spk, " ".join(sorted(utts, key=kaldi_sort_key))) for spk, utts in _sorted_items(self.spk2utt)),
        )
        if self.segments is not None:
            write_table(
                path / "segments",
                (
                    (utt, f"{s.recording} {s.start:.3f} {-1 if s.end is None else round(s.end, 3)}")
                    for utt, s in _sorted_items(self.segments)
                ),
            )
        if self.utt2dur is not None:
            write_table(path / "utt2dur", ((u, f"{d:.4f}") for u, d in _sorted_items(self.utt2dur)))
        self.path = path


def _sorted_items(table: dict) -> list:
    return sorted(table.items(), key=lambda item: kaldi_sort_key(item[0]))


def _sorted_rows(table: dict[str, str]) -> list[tuple[str, str]]:
    return _sorted_items(table)


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        spk2utt.setdefault(spk, []).append(utt)
    return {spk: spk2utt[spk] for spk in sorted(spk2utt, key=kaldi_sort_key)}


def _check_sorted(path: Path, keys_by_line: Iterable[tuple[int, str]]) -> list[SpkverifError]:
    problems = []
    previous: str | None = None
    for number, key in keys_by_line:
        if previous is not None and kaldi_sort_key(key) < kaldi_sort_key(previous):
            problems.append(
                SpkverifError(f"not sorted: {key!r} after {previous!r} (use `LC_ALL=C sort`)", path, number)
            )
            break
        previous = key
    return problems


def _read_lines(path: Path) -> list[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        return [(n, line.split()) for n, line in enumerate(handle, start=1) if line.strip()]


def validate_data_dir(path: str | Path, check_audio_files: bool = False) -> list[SpkverifError]:
    """Every problem found in a data directory, each with its file and line."""
    path = Path(path)
    if not path.is_dir():
        return [SpkverifError("no such data directory", path)]
    problems: list[SpkverifError] = []
    for required in ("wav.scp", "utt2spk"):
        if not (path / required).is_file():
            problems.append(SpkverifError(f"missing {required}", path))
    if problems:
        return problems

    tables: dict[str, list[tuple[int, list[str]]]] = {}
    for name in ("wav.scp", "utt2spk", "spk2utt", "segments", "utt2dur"):
        if (path / name).is_file():
            tables[name] = _read_lines(path / name)

    for name, rows in tables.items():
        file = path / name
        seen: dict[str, int] = {}
        for number, fields in rows:
            if fields[0] in seen:
                problems.append(
                    SpkverifError(f"duplicate key {fields[0]!r} (first on line {seen[fields[0]]})", file, number)
                )
            else:
                seen[fields[0]] = number
        problems += _check_sorted(file, ((n, f[0]) for n, f in rows))

    utt2spk: dict[str, str] = {}
    utt_line: dict[str, int] = {}
    for number, fields in tables["utt2spk"]:
        if len(fields) != 2:
            problems.append(
                SpkverifError(f"expected `utt speaker`, found {len(fields)} fields", path / "utt2spk", number)
            )
            continue
        utt2spk.setdefault(fields[0], fields[1])
        utt_line.setdefault(fields[0], number)
    if not utt2spk:
        problems.append(SpkverifError("no utterances: the data directory is empty", path / "utt2spk"))

    if "spk2utt" in tables:
        listed: set[str] = set()
        for number, fields in tables["spk2utt"]:
            speaker, utts = fields[0], fields[1:]
            if not utts:
                problems.append(SpkverifError(f"speaker {speaker!r} has no utterances", path / "spk2utt", number))
            for utt in utts:
                listed.add(utt)
                if utt2spk.get(utt) != speaker:
                    actual = utt2spk.get(utt)
                    detail = "is not in utt2spk" if actual is None else f"belongs to {actual!r} in utt2spk"
                    problems.append(
                        SpkverifError(f"utterance {utt!r} of speaker {speaker!r} {detail}", path / "spk2utt", number)
                    )
        for utt in utt2spk:
            if utt not in listed:
                problems.append(
                    SpkverifError(f"utterance {utt!r} is missing from spk2utt", path / "utt2spk", utt_line[utt])
                )

    wav_entries: dict[str, tuple[int, str]] = {}
    for number, fields in tables["wav.scp"]:
        if len(fields) < 2:
            problems.append(SpkverifError("expected `id path` or `id command |`", path / "wav.scp", number))
            continue
        wav_entries.setdefault(fields[0], (number, " ".join(fields[1:])))

    if "segments" in tables:
        segmented: set[str] = set()
        for number, fields in tables["segments"]:
            file = path / "segments"
            if len(fields) != 4:
                problems.append(SpkverifError("expected `segment recording start end`", file, number))
                continue
            segmented.add(fields[0])
            if fields[1] not in wav_entries:
                problems.append(SpkverifError(f"recording {fields[1]!r} is not in wav.scp", file, number))
            try:
                start, end = float(fields[2]), float(fields[3])
            except ValueError:
                problems.append(SpkverifError("start and end must be numbers", file, number))
                continue
            if start < 0 or (end != -1 and end <= start):
                problems.append(SpkverifError(f"bad segment times {start} {end}", file, number))
        for utt, number in utt_line.items():
            if utt not in segmented:
                problems.append(SpkverifError(f"utterance {utt!r} has no segment (no audio)", path / "utt2spk", number))
    else:
        for utt, number in utt_line.items():
            if utt not in wav_entries:
                problems.append(SpkverifError(f"utterance {utt!r} has no audio in wav.scp", path / "utt2spk", number))
        for rec, (number, _) in wav_entries.items():
            if rec not in utt2spk:
                problems.append(SpkverifError(f"{rec!r} is not in utt2spk", path / "wav.scp", number))

    if "utt2dur" in tables:
        for number, fields in tables["utt2dur"]:
            file = path / "utt2dur"
            try:
                ok = len(fields) == 2 and float(fields[1]) > 0
            except ValueError:
                ok = False
            if not ok:
                problems.append(SpkverifError("expected `utt seconds` with seconds > 0", file, number))
            elif fields[0] not in utt2spk:
                problems.append(SpkverifError(f"utterance {fields[0]!r} is not in utt2spk", file, number))

    if check_audio_files:
        for rec, (number, spec) in wav_entries.items():
            if not spec.endswith("|") and not _is_ark_entry(spec) and not os.path.exists(spec):
                problems.append(
                    SpkverifError(f"audio file {spec!r} of {rec!r} does not exist", path / "wav.scp", number)
                )
    return problems


def _is_ark_entry(spec: str) -> bool:
    return ":" in spec and spec.rsplit(":", 1)[1].isdigit()


def load_data_dir(path: str | Path, check_audio_files: bool = False) -> DataDir:
    """Read and validate a data directory; the first problem is raised as a user error."""
    path = Path(path)
    problems = validate_data_dir(path, check_audio_files=check_audio_files)
    if problems:
        raise problems[0]
    wav_scp = {key: value for key, (_, value) in read_rest_of_line(path / "wav.scp").items()}
    utt2spk = {key: value for key, (_, value) in read_rest_of_line(path / "utt2spk").items()}
    segments = None
    if (path / "segments").is_file():
        segments = {}
        for key, (_, value) in read_rest_of_line(path / "segments").items():
            recording, start, end = value.split()
            end_seconds = float(end)
            segments[key] = Segment(recording, float(start), None if end_seconds == -1 else end_seconds)
    utt2dur = None
    if (path / "utt2dur").is_file():
        utt2dur = {key: float(value) for key, (_, value) in read_rest_of_line(path / "utt2dur").items()}
    return DataDir(wav_scp=wav_scp, utt2spk=utt2spk, segments=segments, utt2dur=utt2dur, path=path)


def require_valid(problems: list[SpkverifError]) -> None:
    if problems:
        raise problems[0]


__all__ = ["DataDir", "Segment", "load_data_dir", "require_valid", "spk2utt_from_utt2spk", "validate_data_dir"]
