"""`prepare rirs`: RIRS_NOISES (OpenSLR 28) as Kaldi data directories for reverberation and noise.

The corpus as unzipped:

    RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list
    RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav ...
    RIRS_NOISES/real_rirs_isotropic_noises/{rir_list,noise_list,*.wav}   real RIRs and isotropic noises
    RIRS_NOISES/pointsource_noises/{noise_list,*.wav}

The lists are those Kaldi's steps/data/reverberate_data_dir.py reads: `--rir-id ID
--room-id ROOM [...] RIRS_NOISES/<path>.wav` and `--noise-id ID --noise-type ... <path>`.
They are read to find each RIR's room, to tell the real directory's RIRs from its
noises, and to list files that are named but missing.

A RIR's "speaker" is its room (small-Room001), so spk2utt groups the RIRs of one
room as Kaldi's reverberation script does; a noise is its own speaker. Simulated RIR
ids are Kaldi's rir-ids, `<size>-RoomNNN-NNNNN` (the three sizes reuse file names);
the other ids are the file names.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import warn_about
from spkverif.base.workers import JOBS
from spkverif.io.datadir import DataDir, save_fresh
from spkverif.io.tables import read_text_lines
from spkverif.stages.prepare.directory import AudioEntry, clean_id, data_dir_from, drop_duplicates, measure_durations
from spkverif.stages.prepare.musan import corpus_root, wav_files
from spkverif.stages.prepare.summary import Reference, SetCounts, print_tables, sets_table

logger = logging.getLogger(__name__)

SIZES = ("smallroom", "mediumroom", "largeroom")
PARTS = ("simulated_rirs", "real_rirs_isotropic_noises", "pointsource_noises")
# From the RIRS_NOISES README: 325 real RIRs, 843 point-source noises (taken from MUSAN).
PUBLISHED = {"rirs_real": 325, "rirs_pointsource_noises": 843}


@dataclass(frozen=True)
class Listed:
    """One line of a rir_list or noise_list: its options and the file it names."""

    options: dict[str, str]
    relative: str
    line: int


def _relative_to_corpus(location: str, base: Path) -> str:
    """`RIRS_NOISES/x/y.wav` (or an absolute path inside BASE) as `x/y.wav`."""
    parts = PurePosixPath(location).parts
    if "RIRS_NOISES" in parts:
        index = len(parts) - 1 - parts[::-1].index("RIRS_NOISES")
        return "/".join(parts[index + 1 :])
    path = Path(location)
    if path.is_absolute():
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            return path.as_posix()
    return PurePosixPath(location).as_posix()


def read_kaldi_list(path: Path, base: Path) -> dict[str, Listed]:
    """A rir_list or noise_list by the corpus-relative path of each file it names.

    Raises SpkverifError at the line for a line that does not split, an option without a
    value, not one file, a file listed twice or bytes that are not UTF-8; and for a list
    naming no file (an empty list would class every real RIR as a noise)."""
    listed: dict[str, Listed] = {}
    for number, line in read_text_lines(path):
        try:
            tokens = shlex.split(line)
        except ValueError as error:
            raise SpkverifError(f"cannot split the line: {error}", path, number) from None
        if not tokens:
            continue
        options: dict[str, str] = {}
        positional: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.startswith("--") and "=" in token:
                key, value = token[2:].split("=", 1)
                options[key] = value
            elif token.startswith("--"):
                if index + 1 >= len(tokens):
                    raise SpkverifError(f"option {token} has no value", path, number)
                options[token[2:]] = tokens[index + 1]
                index += 1
            else:
                positional.append(token)
            index += 1
        if len(positional) != 1:
            raise SpkverifError("expected `--option value ... <file>` with one file", path, number)
        relative = _relative_to_corpus(positional[0], base)
        if relative in listed:
            raise SpkverifError(f"{relative!r} is listed twice (first on line {listed[relative].line})", path, number)
        listed[relative] = Listed(options, relative, number)
    if not listed:
        raise SpkverifError("the list names no file", path)
    return listed


@dataclass
class _Set:
    name: str
    entries: list[AudioEntry]
    listed: int | None
    missing: list[str]


def _read_list_if_any(path: Path, base: Path) -> dict[str, Listed] | None:
    return read_kaldi_list(path, base) if path.is_file() else None


def _missing(listed: dict[str, Listed] | None, found: set[str], list_path: Path) -> list[str]:
    if listed is None:
        return []
    return [f"{list_path}:{item.line}: {relative}" for relative, item in listed.items() if relative not in found]


def _simulated(base: Path) -> list[_Set]:
    sets = []
    for size in SIZES:
        directory = base / "simulated_rirs" / size
        if not directory.is_dir():
            logger.warning("%s is missing: rirs_%s not written", directory, size)
            continue
        short = size.removesuffix("room")
        listed = _read_list_if_any(directory / "rir_list", base)
        entries = []
        for path in wav_files(directory):
            relative = path.relative_to(base).as_posix()
            item = listed.get(relative) if listed else None
            room = item.options.get("room-id") if item else None
            entries.append(AudioEntry(clean_id(room or f"{short}-{path.parent.name}"), f"{short}-{path.stem}", path))
        found = {e.path.relative_to(base).as_posix() for e in entries}
        missing = _missing(listed, found, directory / "rir_list")
        sets.append(_Set(f"rirs_{size}", entries, len(listed) if listed is not None else None, missing))
    return sets


def _real(base: Path) -> list[_Set]:
    directory = base / "real_rirs_isotropic_noises"
    if not directory.is_dir():
        logger.warning("%s is missing: rirs_real and rirs_isotropic_noises not written", directory)
        return []
    rir_list = _read_list_if_any(directory / "rir_list", base)
    noise_list = _read_list_if_any(directory / "noise_list", base)
    rirs, noises = [], []
    for path in wav_files(directory):
        relative = path.relative_to(base).as_posix()
        utt = clean_id(path.stem)
        if rir_list is not None and relative in rir_list:
            rirs.append(AudioEntry(clean_id(rir_list[relative].options.get("room-id", utt)), utt, path))
        elif (noise_list is not None and relative in noise_list) or "noise" in path.stem.lower():
            noises.append(AudioEntry(utt, utt, path))
        else:
            rirs.append(AudioEntry(utt, utt, path))
    found = {e.path.relative_to(base).as_posix() for e in rirs + noises}
    return [
        _Set(
            "rirs_real",
            rirs,
            len(rir_list) if rir_list is not None else PUBLISHED["rirs_real"],
            _missing(rir_list, found, directory / "rir_list"),
        ),
        _Set(
            "rirs_isotropic_noises",
            noises,
            len(noise_list) if noise_list is not None else None,
            _missing(noise_list, found, directory / "noise_list"),
        ),
    ]


def _pointsource(base: Path) -> list[_Set]:
    directory = base / "pointsource_noises"
    if not directory.is_dir():
        logger.warning("%s is missing: rirs_pointsource_noises not written", directory)
        return []
    listed = _read_list_if_any(directory / "noise_list", base)
    entries = [AudioEntry(clean_id(p.stem), clean_id(p.stem), p) for p in wav_files(directory)]
    found = {e.path.relative_to(base).as_posix() for e in entries}
    reference = len(listed) if listed is not None else PUBLISHED["rirs_pointsource_noises"]
    return [_Set("rirs_pointsource_noises", entries, reference, _missing(listed, found, directory / "noise_list"))]


def prepare_rirs(root: str | Path, out: str | Path, jobs: int = JOBS) -> dict[str, DataDir]:
    """OUT/rirs_{smallroom,mediumroom,largeroom,real}, OUT/rirs (all simulated), and the two noise sets."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    base = corpus_root(root, PARTS, "RIRS_NOISES")
    simulated = _simulated(base)
    sets = [*simulated]
    if simulated:
        total = None if any(s.listed is None for s in simulated) else sum(s.listed or 0 for s in simulated)
        missing = [m for s in simulated for m in s.missing]
        sets.append(_Set("rirs", [e for s in simulated for e in s.entries], total, missing))
    sets += _real(base) + _pointsource(base)
    parts = [s for s in sets if s.name != "rirs"]
    everything, duplicates = drop_duplicates(e for s in parts for e in s.entries)
    warn_about(duplicates, "files left out because another file has the same id", "duplicate")
    if not everything:
        raise SpkverifError("no .wav files in the RIRS_NOISES parts", base)
    warn_about([m for s in parts for m in s.missing], "files named by the lists are missing", "missing")
    measured = measure_durations(everything, jobs, "prepare rirs")
    survivors = {entry.path for entry in everything}
    data: dict[str, DataDir] = {}
    rows = []
    for item in sets:
        unique = [entry for entry in item.entries if entry.path in survivors]
        part = data_dir_from(unique, measured.durations)
        if not part.utterances:
            logger.warning("no readable audio for %s: not written", item.name)
            continue
        save_fresh(part, out / item.name)
        data[item.name] = part
        note = f"{len(item.missing)} listed files missing" if item.missing else ""
        left_out = len(item.entries) - len(part.utterances)
        rows.append(SetCounts.of(item.name, part, left_out, Reference(utterances=item.listed), note))
    caption = (
        "found / listed in the corpus's rir_list or noise_list (published counts where no list); "
        "left out: unreadable or duplicate files"
    )
    print_tables(sets_table(f"RIRS_NOISES in {base}", rows, caption))
    return data
