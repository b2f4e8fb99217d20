"""Kaldi data directories: wav.scp, [segments], utt2spk, spk2utt, [utt2dur], [spk2gender].

`validate_data_dir` plays the part of Kaldi's `utils/validate_data_dir.sh`:
it collects every problem with its file and line instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.io.tables import kaldi_sort_key, parse_number, read_rest_of_line, read_text_lines, write_table

SEGMENT_OVERSHOOT = 0.5
"""Seconds a segment may end past its recording and be clipped to the end; further is an error.

Kaldi's `extract-segments --max-overshoot` default (0.5 s); a start at or past the end is always an error."""


UTT2DUR_TOLERANCE = 0.01
"""Seconds utt2dur may differ from the audio it describes (it is written to 4 decimals)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording, in seconds; `end` None means to the end of the file.

    `source` and `line` locate the segments line, for errors found when the audio is read.
    """

    recording: str
    start: float
    end: float | None
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def clip(self, duration: float) -> tuple[float, float]:
        """(start, end) in seconds within a recording of `duration` seconds.

        Raises `SpkverifError` at the segments line when the segment starts at or past the
        end, or ends more than `SEGMENT_OVERSHOOT` seconds past it (Kaldi's extract-segments).
        """
        problem = self.problem(duration)
        if problem is not None:
            raise SpkverifError(problem, self.source, self.line)
        end = duration if self.end is None else min(self.end, duration)
        return self.start, end

    def problem(self, duration: float) -> str | None:
        """Why this segment does not fit a recording of `duration` seconds, or None."""
        if self.start >= duration:
            return f"segment starts at {self.start:g} s, at or past the end of {self.recording!r} ({duration:g} s long)"
        if self.end is not None and self.end > duration + SEGMENT_OVERSHOOT:
            return (
                f"segment ends at {self.end:g} s, more than {SEGMENT_OVERSHOOT:g} s past the end of "
                f"{self.recording!r} ({duration:g} s long)"
            )
        return None


def parse_segment(fields: list[str], path: str | Path, line: int) -> Segment:
    """One `segment recording start end` line (fields after the key); end -1 means to the end."""
    if len(fields) != 3:
        raise SpkverifError(f"expected `segment recording start end`, found {len(fields) + 1} fields", path, line)
    start = parse_number(fields[1], "start", path, line, minimum=0.0)
    end = parse_number(fields[2], "end", path, line)
    if end != -1 and end <= start:
        raise SpkverifError(f"end {fields[2]} is not after start {fields[1]}", path, line)
    return Segment(fields[0], start, None if end == -1 else end, str(path), line)


def read_segments(path: str | Path) -> dict[str, Segment]:
    """The one segments reader: segment id -> Segment, each line checked (Kaldi's format)."""
    return {key: parse_segment(value.split(), path, line) for key, (line, value) in read_rest_of_line(path).items()}


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
    return [(n, line.split()) for n, line in read_text_lines(path) if line.strip()]


def _problems_of(check: Callable[..., object], *args: Any, **kwargs: Any) -> list[SpkverifError]:
    """Run a check that raises at its first problem; its problem as a list."""
    try:
        check(*args, **kwargs)
    except SpkverifError as error:
        return [error]
    return []


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
    for name in ("wav.scp", "utt2spk", "spk2utt", "segments", "utt2dur", "spk2gender"):
        if (path / name).is_file():
            try:
                tables[name] = _read_lines(path / name)
            except SpkverifError as error:
                problems.append(error)
                continue
            if not tables[name]:
                problems.append(SpkverifError("the file is empty (fill it, or remove it where it is optional)",
                                              path / name))  # fmt: skip
    if problems:
        return problems

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

    segments: dict[str, Segment] = {}
    if "segments" in tables:
        segmented: set[str] = set()
        for number, fields in tables["segments"]:
            file = path / "segments"
            segmented.add(fields[0])
            try:
                segment = parse_segment(fields[1:], file, number)
            except SpkverifError as error:
                problems.append(error)
                continue
            if segment.recording not in wav_entries:
                problems.append(SpkverifError(f"recording {segment.recording!r} is not in wav.scp", file, number))
            segments.setdefault(fields[0], segment)
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

    durations_listed: dict[str, tuple[float, int]] = {}
    if "utt2dur" in tables:
        for number, fields in tables["utt2dur"]:
            file = path / "utt2dur"
            if len(fields) != 2:
                problems.append(SpkverifError(f"expected `utt seconds`, found {len(fields)} fields", file, number))
                continue
            found = _problems_of(parse_number, fields[1], "duration", file, number, positive=True)
            problems += found
            if not found:
                durations_listed[fields[0]] = (float(fields[1]), number)
            if fields[0] not in utt2spk:
                problems.append(SpkverifError(f"utterance {fields[0]!r} is not in utt2spk", file, number))

    if "spk2gender" in tables:
        problems += _check_spk2gender(path / "spk2gender", tables["spk2gender"], set(utt2spk.values()))

    if check_audio_files:
        problems += _check_audio(path, wav_entries, segments, durations_listed)
    return problems


def _check_spk2gender(file: Path, rows: list[tuple[int, list[str]]], speakers: set[str]) -> list[SpkverifError]:
    """Kaldi's rule: `speaker m|f`, one line per speaker of utt2spk."""
    problems = []
    for number, fields in rows:
        if len(fields) != 2 or fields[1] not in ("m", "f"):
            problems.append(SpkverifError(f"expected `speaker m|f`, found {' '.join(fields)!r}", file, number))
        elif fields[0] not in speakers:
            problems.append(SpkverifError(f"speaker {fields[0]!r} is not in utt2spk", file, number))
    return problems


def _check_audio(
    path: Path,
    wav_entries: dict[str, tuple[int, str]],
    segments: dict[str, Segment],
    utt2dur: dict[str, tuple[float, int]],
) -> list[SpkverifError]:
    """Audio files exist and hold samples (finite ones, where the file is float); segments lie within their
    recordings; utt2dur agrees with the audio within `UTT2DUR_TOLERANCE` (files only: pipes and arks are
    checked when a stage reads them)."""
    import soundfile

    from spkverif.io.audio import bad_sample_in_file  # io.audio reads data directories: imported when checking

    problems: list[SpkverifError] = []
    durations: dict[str, float] = {}
    for rec, (number, spec) in wav_entries.items():
        if spec.endswith("|") or _is_ark_entry(spec):
            continue
        if not os.path.exists(spec):
            problems.append(SpkverifError(f"audio file {spec!r} of {rec!r} does not exist", path / "wav.scp", number))
            continue
        try:
            info = soundfile.info(spec)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
            problems.append(SpkverifError(f"cannot read audio of {rec!r}: {error}", path / "wav.scp", number))
            continue
        if info.frames <= 0:
            problems.append(SpkverifError(f"recording {rec!r} has no samples", path / "wav.scp", number))
            continue
        bad = bad_sample_in_file(spec, info)
        if bad is not None:
            problems.append(SpkverifError(f"recording {rec!r} has {bad}", path / "wav.scp", number))
        durations[rec] = info.frames / info.samplerate
    actual: dict[str, float] = {}
    for utt, segment in segments.items():
        if segment.recording in durations:
            problem = segment.problem(durations[segment.recording])
            if problem is not None:
                problems.append(SpkverifError(problem, segment.source, segment.line))
            else:
                start, end = segment.clip(durations[segment.recording])
                actual[utt] = end - start
    if not segments:
        actual = durations
    for utt, (listed, number) in utt2dur.items():
        if utt in actual and abs(listed - actual[utt]) > UTT2DUR_TOLERANCE:
            problems.append(
                SpkverifError(f"utt2dur says {listed:g} s; {utt!r} is {actual[utt]:.4f} s", path / "utt2dur", number)
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
    segments = read_segments(path / "segments") if (path / "segments").is_file() else None
    utt2dur = None
    if (path / "utt2dur").is_file():
        utt2dur = {key: float(value) for key, (_, value) in read_rest_of_line(path / "utt2dur").items()}
    return DataDir(wav_scp=wav_scp, utt2spk=utt2spk, segments=segments, utt2dur=utt2dur, path=path)


def require_valid(problems: list[SpkverifError]) -> None:
    if problems:
        raise problems[0]


def save_fresh(data: DataDir, path: Path, stale: Iterable[str] = ()) -> None:
    """Save a data directory, first removing files of an earlier run this one will not rewrite."""
    for name in ("segments", "spk2gender", *stale):
        (path / name).unlink(missing_ok=True)
    data.save(path)


__all__ = [
    "SEGMENT_OVERSHOOT",
    "DataDir",
    "Segment",
    "load_data_dir",
    "parse_segment",
    "read_segments",
    "require_valid",
    "save_fresh",
    "spk2utt_from_utt2spk",
    "validate_data_dir",
]
