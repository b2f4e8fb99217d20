"""Kaldi's data-directory utilities: combine, subset, fix, copy and durations (`spkverif data ...`).

The counterparts of Kaldi's `utils/combine_data.sh`, `utils/subset_data_dir.sh`,
`utils/fix_data_dir.sh`, `utils/copy_data_dir.sh` and `utils/data/get_utt2dur.sh`
(which alone writes into the directory it is given: utt2dur). A directory is read as its
tables (`key rest-of-line`), grouped by what they are keyed on:

- utterance: utt2spk, utt2dur, text, feats.scp, utt2num_frames, utt2lang, vad.scp,
  segments, and wav.scp when there are no segments;
- recording (with segments): wav.scp, reco2dur, reco2file_and_channel;
- speaker: spk2gender, cmvn.scp;

spk2utt is always rebuilt from utt2spk. Other files (trial lists among them) are
not carried: their meaning after a subset or a prefix is the user's to decide.
Every output is checked as `spkverif validate` would and then renamed into place
whole (`atomic_directory`), so a failed command leaves no half-written directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.config import DataOptions
from spkverif.io.atomic import atomic_directory
from spkverif.io.audio import AudioReader, measure_lengths
from spkverif.io.datadir import load_data_dir, require_valid, spk2utt_from_utt2spk, validate_data_dir
from spkverif.io.tables import kaldi_sort_key, write_table

logger = logging.getLogger(__name__)

UTTERANCE_TABLES = ("utt2spk", "utt2dur", "text", "feats.scp", "utt2num_frames", "utt2lang", "vad.scp", "segments")
RECORDING_TABLES = ("wav.scp", "reco2dur", "reco2file_and_channel")
SPEAKER_TABLES = ("spk2gender", "cmvn.scp")
SHOWN = 5


@dataclass
class Tables:
    """A data directory's tables: file name -> key -> the rest of the line, in file order."""

    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def segmented(self) -> bool:
        return "segments" in self.tables

    @property
    def utt2spk(self) -> dict[str, str]:
        return self.tables["utt2spk"]

    def keyed_by(self, kind: str) -> list[str]:
        """The tables present that are keyed on `kind` (utterance, recording or speaker)."""
        names = {
            "utterance": UTTERANCE_TABLES + (() if self.segmented else ("wav.scp",)),
            "recording": RECORDING_TABLES if self.segmented else ("reco2dur", "reco2file_and_channel"),
            "speaker": SPEAKER_TABLES,
        }[kind]
        return [name for name in names if name in self.tables]

    def recording_of(self, utt: str) -> str:
        return self.tables["segments"][utt].split()[0] if self.segmented else utt


def read_tables(path: str | Path, tolerant: bool = False) -> Tables:
    """Every known table of a data directory. Strict (the default): the directory must
    pass `spkverif validate`. Tolerant (for `fix`): only each line's shape is needed;
    a repeated key keeps its first line, and the rest is counted as dropped."""
    path = Path(path)
    if not tolerant:
        require_valid(validate_data_dir(path))
    elif not (path / "utt2spk").is_file():
        raise SpkverifError("missing utt2spk", path)
    result = Tables(path=path)
    for name in (*UTTERANCE_TABLES, *RECORDING_TABLES, *SPEAKER_TABLES, "wav.scp"):
        file = path / name
        if name in result.tables or not file.is_file():
            continue
        table: dict[str, str] = {}
        repeated = 0
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) != 2:
                    raise SpkverifError("expected `key value`, found only a key", file, number)
                if parts[0] in table:
                    repeated += 1
                    continue
                table[parts[0]] = parts[1]
        if repeated:
            logger.warning("%s: %d repeated key(s) dropped (the first line of each kept)", file, repeated)
        result.tables[name] = table
    return result


def write_tables(tables: Tables, out: str | Path) -> None:
    """Write the tables and spk2utt, C-sorted, as one directory renamed into place whole."""
    out = Path(out)
    if not tables.utt2spk:
        raise SpkverifError("no utterances left: nothing written", out)
    with atomic_directory(out) as staging:
        for name, table in tables.tables.items():
            write_table(staging / name, sorted(table.items(), key=lambda item: kaldi_sort_key(item[0])))
        spk2utt = spk2utt_from_utt2spk(tables.utt2spk)
        write_table(
            staging / "spk2utt", ((spk, " ".join(sorted(utts, key=kaldi_sort_key))) for spk, utts in spk2utt.items())
        )
        problems = validate_data_dir(staging)
        if problems:
            raise SpkverifError(f"the result would not be a valid data directory: {problems[0]}", out)


def _keep(tables: Tables, utts: Iterable[str]) -> Tables:
    """Only these utterances, the recordings they use and the speakers they belong to."""
    keep = set(utts)
    recordings = {tables.recording_of(utt) for utt in keep}
    speakers = {tables.utt2spk[utt] for utt in keep}
    wanted = {"utterance": keep, "recording": recordings, "speaker": speakers}
    result = Tables(path=tables.path)
    for kind, keys in wanted.items():
        for name in tables.keyed_by(kind):
            result.tables[name] = {key: value for key, value in tables.tables[name].items() if key in keys}
    return result


def _read_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such file", path)
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def subset_data_dir(
    source: str | Path,
    out: str | Path,
    utt_list: str | Path | None = None,
    spk_list: str | Path | None = None,
    first: int | None = None,
    per_spk: int | None = None,
    random: int | None = None,
    seed: int = 0,
) -> Tables:
    """Kaldi's subset_data_dir.sh: by utterance list, speaker list, the first N utterances
    (C order), K utterances of each speaker (its first K), or N utterances drawn with `seed`.

    Exactly one way must be given. Ids in a list that the directory lacks are counted
    in a warning. Raises SpkverifError for none or several ways, N < 1, or no utterances left.
    """
    given = {
        "--utt-list": utt_list,
        "--spk-list": spk_list,
        "--first": first,
        "--per-spk": per_spk,
        "--random": random,
    }
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise SpkverifError(f"give exactly one of {', '.join(given)} (given: {', '.join(chosen) or 'none'})")
    count = first if first is not None else per_spk if per_spk is not None else random
    if count is not None and count < 1:
        raise SpkverifError(f"{chosen[0]} must be at least 1, not {count}")
    tables = read_tables(source)
    utts = sorted(tables.utt2spk, key=kaldi_sort_key)
    if utt_list is not None or spk_list is not None:
        listed = _read_list(utt_list if utt_list is not None else spk_list)  # type: ignore[arg-type]
        known = set(utts) if utt_list is not None else set(tables.utt2spk.values())
        absent = [key for key in listed if key not in known]
        if absent:
            logger.warning(
                "%d id(s) of the list are not in %s (e.g. %s)", len(absent), source, ", ".join(absent[:SHOWN])
            )
        wanted = set(listed)
        keep = [u for u in utts if (u if utt_list is not None else tables.utt2spk[u]) in wanted]
    elif first is not None:
        keep = utts[:first]
    elif per_spk is not None:
        seen: dict[str, int] = {}
        keep = []
        for utt in utts:
            speaker = tables.utt2spk[utt]
            seen[speaker] = seen.get(speaker, 0) + 1
            if seen[speaker] <= per_spk:
                keep.append(utt)
    else:
        rng = np.random.default_rng(seed)
        keep = [utts[i] for i in sorted(rng.choice(len(utts), size=min(random, len(utts)), replace=False))]
    result = _keep(tables, keep)
    write_tables(result, out)
    return result


def fix_data_dir(path: str | Path, out: str | Path | None = None) -> dict[str, int]:
    """Kaldi's fix_data_dir.sh: keep the utterances present in every utterance table (and
    whose recording is in wav.scp), sort every file, rebuild spk2utt; in place unless `out`.

    Returns the number of lines dropped per file, and logs them with a few ids each.
    """
    path = Path(path)
    tables = read_tables(path, tolerant=True)
    utts = set(tables.utt2spk)
    for name in tables.keyed_by("utterance"):
        utts &= set(tables.tables[name])
    if tables.segmented:
        recordings = set(tables.tables.get("wav.scp", {}))
        utts = {utt for utt in utts if tables.recording_of(utt) in recordings}
    result = _keep(tables, utts)
    dropped: dict[str, int] = {}
    for name, table in tables.tables.items():
        gone = [key for key in table if key not in result.tables.get(name, {})]
        if gone:
            dropped[name] = len(gone)
            logger.warning("%s: %d line(s) dropped (e.g. %s)", path / name, len(gone), ", ".join(gone[:SHOWN]))
    if not dropped:
        logger.info("%s: nothing to drop", path)
    write_tables(result, out if out is not None else path)
    return dropped


def copy_data_dir(source: str | Path, out: str | Path, spk_prefix: str = "", utt_prefix: str = "") -> Tables:
    """Kaldi's copy_data_dir.sh: a copy with every speaker id prefixed by `spk_prefix` and
    every utterance (and recording) id by `utt_prefix`, so corpora whose ids clash can be
    combined. Kaldi's advice holds: let the utterance prefix start with the speaker prefix
    (`--spk-prefix a- --utt-prefix a-`), so utterances still sort by speaker."""
    if any(char.isspace() for char in spk_prefix + utt_prefix):
        raise SpkverifError("prefixes may not hold whitespace")
    tables = read_tables(source)
    result = Tables(path=tables.path)
    for name, table in tables.tables.items():
        if name in SPEAKER_TABLES:
            result.tables[name] = {spk_prefix + key: value for key, value in table.items()}
        elif name == "utt2spk":
            result.tables[name] = {utt_prefix + key: spk_prefix + value for key, value in table.items()}
        elif name == "segments":
            result.tables[name] = {utt_prefix + key: utt_prefix + value for key, value in table.items()}
        else:
            result.tables[name] = {utt_prefix + key: value for key, value in table.items()}
    write_tables(result, out)
    return result


def _identity_segments(tables: Tables) -> dict[str, str]:
    """Segments for a directory without: each utterance the whole of its recording (end -1)."""
    return {utt: f"{utt} 0.000 -1" for utt in tables.utt2spk}


def combine_data_dirs(sources: list[str | Path], out: str | Path) -> Tables:
    """Kaldi's combine_data.sh: the union of several directories.

    When some have segments and others not, the others get one segment per
    utterance spanning its recording, as Kaldi does. A table is kept only where
    every source has it (utt2dur, spk2gender, ...). Raises SpkverifError on the first
    utterance (or recording) id found in two sources, naming both and the remedy.
    """
    if not sources:
        raise SpkverifError("nothing to combine: give at least one source data directory")
    parts = [read_tables(source) for source in sources]
    segmented = any(part.segmented for part in parts)
    for part in parts:
        if segmented and not part.segmented:
            part.tables["segments"] = _identity_segments(part)
    result = Tables()
    names = [name for name in parts[0].tables if all(name in part.tables for part in parts)]
    dropped = sorted({name for part in parts for name in part.tables} - set(names))
    if dropped:
        logger.warning("not in every source, so not combined: %s", ", ".join(dropped))
    first_source: dict[tuple[str, str], Path | None] = {}
    for part in parts:
        for name in names:
            target = result.tables.setdefault(name, {})
            shared = name in SPEAKER_TABLES or (segmented and name in RECORDING_TABLES)
            for key, value in part.tables[name].items():
                if key in target:
                    if shared and target[key] == value:
                        continue
                    what = "speaker" if name in SPEAKER_TABLES else "recording" if shared else "utterance"
                    raise SpkverifError(
                        f"{what} id {key!r} ({name}) is in both {first_source[(name, key)]} and {part.path}; "
                        "give the sources distinct ids first with `spkverif data copy --utt-prefix P --spk-prefix P`",
                        part.path / name if part.path else None,
                    )
                target[key] = value
                first_source[(name, key)] = part.path
    write_tables(result, out)
    return result


def write_durations(
    path: str | Path, sample_rate: int = DataOptions.sample_rate, force: bool = False
) -> dict[str, float]:
    """Kaldi's utils/data/get_utt2dur.sh: write `path/utt2dur` (`utt seconds`, 4 decimals, C-sorted).

    Lengths are counted at `sample_rate` (by default the rate `train` reads at; a recording
    at another rate as if resampled; segments by their bounds). A directory whose utt2dur
    already covers every utterance is left alone unless `force`. Returns the durations in seconds. Raises
    `SpkverifError` for a malformed directory or unreadable audio (utt2dur is then
    not written: the write is atomic).
    """
    path = Path(path)
    data = load_data_dir(path)
    if data.utt2dur is not None and set(data.utterances) <= set(data.utt2dur) and not force:
        logger.info("%s already holds every utterance's duration (--force measures again)", path / "utt2dur")
        return data.utt2dur
    reader = AudioReader.from_data_dir(data, sample_rate, allow_resample=True)
    durations = {utt: samples / sample_rate for utt, samples in measure_lengths(reader, data.utterances).items()}
    rows = sorted(durations.items(), key=lambda row: kaldi_sort_key(row[0]))
    write_table(path / "utt2dur", ((utt, f"{seconds:.4f}") for utt, seconds in rows))
    logger.info("%s: durations of %d utterances (%.2f h)", path / "utt2dur", len(rows), sum(durations.values()) / 3600)
    return durations
