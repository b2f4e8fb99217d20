"""`prepare librispeech`: the LibriSpeech tree as one Kaldi data directory per subset.

The corpus (Panayotov et al., ICASSP 2015; OpenSLR 12) keeps each utterance at
`<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac`, under ROOT or
ROOT/LibriSpeech, with `SPEAKERS.TXT` (`ID | SEX | SUBSET | MINUTES | NAME`) beside
the subsets. Utterance ids are the corpus's own file names (`103-1240-0000`), which
start with the speaker as Kaldi expects; since `-` sorts before every digit, the C
order of utterances also groups them by speaker. The "speaker" is the reader (Kaldi's
ASR recipe uses reader-chapter; for verification the reader is the identity).
Data directories are named as in Kaldi's `egs/librispeech/s5` (`train_clean_100`).

Evaluation subsets (dev-*, test-*) get a Kaldi trial list: every pair of utterances
by default, or `trials` pairs, half target and half nontarget, drawn by a hash keyed
with `seed` (`trials.balanced_trials`); a speaker's target pairs across chapters are
taken first where the speaker has several (the same chapter is the same book read in
one sitting: an easier target). The list depends on the utterance ids alone, never on
the audio. `protocol` is spkverif's LibriSpeech verification protocol: those lists for
dev-clean, dev-other, test-clean and test-other with a fixed size and seed, whose
trial counts and sha256 are printed and published (docs/librispeech_protocol.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import warn_about
from spkverif.base.workers import JOBS
from spkverif.io.atomic import atomic_directory
from spkverif.io.datadir import DataDir
from spkverif.io.tables import write_table
from spkverif.io.trials import write_trials
from spkverif.stages.prepare.directory import AudioEntry, data_dir_from, measure_durations, walk_corpus_tree
from spkverif.stages.prepare.summary import (
    DrawnTrials,
    Reference,
    SetCounts,
    drawn_trials_table,
    print_tables,
    sets_table,
)
from spkverif.stages.prepare.trials import all_pairs, balanced_trials

logger = logging.getLogger(__name__)

# Speakers and utterances from the corpus's own counts; hours from Panayotov et al., table 1.
LIBRISPEECH_SUBSETS = {
    "train-clean-100": Reference(251, 28539, 100.6),
    "train-clean-360": Reference(921, 104014, 363.6),
    "train-other-500": Reference(1166, 148688, 496.7),
    "dev-clean": Reference(40, 2703, 5.4),
    "dev-other": Reference(33, 2864, 5.3),
    "test-clean": Reference(40, 2620, 5.4),
    "test-other": Reference(33, 2939, 5.1),
}
EVALUATION_PREFIXES = ("dev-", "test-")
# The protocol (docs/librispeech_protocol.md): these subsets, PROTOCOL_TRIALS trials each, seed PROTOCOL_SEED.
PROTOCOL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
PROTOCOL_TRIALS = 40_000
PROTOCOL_SEED = 0
SPEAKERS_FILE = "SPEAKERS.TXT"
_FILE_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass
class LibriSpeechResult:
    """What `prepare_librispeech` wrote: data directories by subset, trials written (and each
    list's counts and checksum), problems found."""

    data: dict[str, DataDir] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    lists: dict[str, DrawnTrials] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    misnamed: list[str] = field(default_factory=list)
    genders: bool = False


def data_dir_name(subset: str) -> str:
    """Kaldi's name for a subset: `train-clean-100` -> `train_clean_100`."""
    return subset.replace("-", "_")


def is_evaluation_subset(subset: str) -> bool:
    return subset.startswith(EVALUATION_PREFIXES)


def corpus_root(root: Path) -> Path:
    """ROOT itself or ROOT/LibriSpeech, whichever holds subsets or SPEAKERS.TXT."""
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    for candidate in (root, root / "LibriSpeech"):
        if candidate.is_dir() and (
            (candidate / SPEAKERS_FILE).is_file() or any((candidate / name).is_dir() for name in LIBRISPEECH_SUBSETS)
        ):
            return candidate
    names = ", ".join(LIBRISPEECH_SUBSETS)
    raise SpkverifError(f"no LibriSpeech subset ({names}) here or in LibriSpeech/", root)


def read_speakers_file(path: Path) -> dict[str, str]:
    """speaker -> Kaldi gender (`m`/`f`) from SPEAKERS.TXT; `;` lines are comments."""
    genders: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            fields = [part.strip() for part in line.split("|")]
            if len(fields) < 3 or not fields[0].isdigit() or fields[1].upper() not in ("M", "F"):
                raise SpkverifError("expected `ID | SEX | SUBSET | MINUTES | NAME` with SEX M or F", path, number)
            genders[fields[0]] = fields[1].lower()
    if not genders:
        raise SpkverifError("no speakers in the speaker table", path)
    return genders


def scan_subset(directory: Path) -> tuple[list[AudioEntry], list[str]]:
    """Every `<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac` below `directory`.

    Returns the entries sorted by id, and the files whose names do not match their
    folders (as `path: why` lines; they are left out).
    """
    entries: list[AudioEntry] = []
    misnamed: list[str] = []
    for speaker, chapter, item in walk_corpus_tree(directory):
        stem, suffix = os.path.splitext(item.name)
        if suffix.lower() != ".flac":
            continue
        match = _FILE_NAME.match(stem)
        if match is None or match.group(1) != speaker.name or match.group(2) != chapter.name:
            misnamed.append(f"{item.path}: expected {speaker.name}-{chapter.name}-NNNN.flac in this folder")
            continue
        entries.append(AudioEntry(speaker.name, stem, Path(item.path)))
    entries.sort(key=lambda entry: entry.utt.encode())
    return entries, misnamed


def _select_subsets(root: Path, subsets: list[str] | None, protocol: bool = False) -> list[str]:
    if protocol:
        outside = [name for name in subsets or () if name not in PROTOCOL_SUBSETS]
        if outside:
            raise SpkverifError(f"--protocol covers {', '.join(PROTOCOL_SUBSETS)}, not {outside[0]}")
        if not subsets:
            subsets = [name for name in PROTOCOL_SUBSETS if (root / name).is_dir()]
            if not subsets:
                raise SpkverifError(f"none of the protocol's subsets ({', '.join(PROTOCOL_SUBSETS)}) is here", root)
    if subsets:
        unknown = [name for name in subsets if name not in LIBRISPEECH_SUBSETS]
        if unknown:
            raise SpkverifError(f"unknown subset {unknown[0]!r}; LibriSpeech has {', '.join(LIBRISPEECH_SUBSETS)}")
        missing = [name for name in subsets if not (root / name).is_dir()]
        if missing:
            raise SpkverifError(f"subset {missing[0]!r} is not there", root / missing[0])
        return list(dict.fromkeys(subsets))
    present = [name for name in LIBRISPEECH_SUBSETS if (root / name).is_dir()]
    if not present:
        raise SpkverifError(f"no LibriSpeech subset here ({', '.join(LIBRISPEECH_SUBSETS)})", root)
    return present


def chapter_of(utt: str) -> str:
    """`<speaker>-<chapter>` of an utterance id `<speaker>-<chapter>-<nnnn>`."""
    return utt.rsplit("-", 1)[0]


def make_trials(utterances: Iterable[str], num_trials: int | None, seed: int) -> Iterable[tuple[str, str, bool]]:
    """The trial list of a subset's utterance ids (`<speaker>-<chapter>-<nnnn>`), from the ids alone.

    Every pair (`num_trials` None), generated as written (3.4 M for test-clean), or
    `num_trials` balanced pairs keyed by `seed`, a speaker's cross-chapter targets first
    (`trials.balanced_trials`). Raises SpkverifError when no speaker has two utterances,
    or (a sample) when there is one speaker only.
    """
    utt2spk = {utt: utt.split("-", 1)[0] for utt in utterances}
    if num_trials is None:
        return all_pairs(utt2spk)
    return balanced_trials(utt2spk, num_trials, seed, {utt: chapter_of(utt) for utt in utt2spk})


def _counted(rows: Iterable[tuple[str, str, bool]], counts: list[int]) -> Iterator[tuple[str, str, bool]]:
    """Pass the rows through, adding to counts [trials, targets, targets across chapters]."""
    for row in rows:
        counts[0] += 1
        counts[1] += row[2]
        counts[2] += row[2] and chapter_of(row[0]) != chapter_of(row[1])
        yield row


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_librispeech(
    root: str | Path,
    out: str | Path,
    subsets: list[str] | None = None,
    num_trials: int | None = None,
    seed: int = 0,
    jobs: int = JOBS,
    protocol: bool = False,
) -> LibriSpeechResult:
    """OUT/<subset> for each subset asked for (default: each one present), with trials for dev/test subsets.

    `protocol`: the protocol's subsets (those of PROTOCOL_SUBSETS present, or `subsets`
    among them) with PROTOCOL_TRIALS trials each, seed PROTOCOL_SEED. Each list's counts
    and sha256 are printed and returned (`LibriSpeechResult.lists`).

    Raises SpkverifError for a missing ROOT, an unknown or absent subset, a subset
    outside the protocol or a --trials or --seed beside it, an unreadable SPEAKERS.TXT
    line, a subset with no readable audio or no pair to draw, or an output directory
    holding files that are not a data directory's. Unreadable and misnamed files are
    listed and left out, not fatal. Each data directory is built apart and renamed
    into place whole (`atomic_directory`).
    """
    root, out = corpus_root(Path(root)), Path(out)
    if protocol:
        if num_trials is not None or seed != PROTOCOL_SEED:
            raise SpkverifError(
                f"--protocol is --trials {PROTOCOL_TRIALS} --seed {PROTOCOL_SEED}: give --protocol or those"
            )
        num_trials, seed = PROTOCOL_TRIALS, PROTOCOL_SEED
    if num_trials is not None and num_trials < 2:
        raise SpkverifError(f"--trials must be at least 2 (one target, one nontarget), not {num_trials}")
    chosen = _select_subsets(root, subsets, protocol)
    speakers_file = root / SPEAKERS_FILE
    genders = read_speakers_file(speakers_file) if speakers_file.is_file() else None
    if genders is None:
        logger.warning("no %s in %s: spk2gender is not written", SPEAKERS_FILE, root)
    result = LibriSpeechResult(genders=genders is not None)
    rows: list[SetCounts] = []
    trial_rows: list[DrawnTrials] = []
    for subset in chosen:
        entries, misnamed = scan_subset(root / subset)
        warn_about(misnamed, f"files in {root / subset} are not named <speaker>-<chapter>-NNNN.flac", "misnamed")
        measured = measure_durations(entries, jobs, f"prepare librispeech {subset}")
        data = data_dir_from(entries, measured.durations)
        if not data.utterances:
            raise SpkverifError("no readable <speaker>/<chapter>/<speaker>-<chapter>-NNNN.flac files", root / subset)
        name = data_dir_name(subset)
        try:
            trials = make_trials(data.utterances, num_trials, seed) if is_evaluation_subset(subset) else None
        except SpkverifError as error:
            raise SpkverifError(error.message, root / subset) from None
        counts = [0, 0, 0]
        checksum = ""
        with atomic_directory(out / name) as staging:
            data.save(staging)
            if genders is not None:
                known = [(spk, genders[spk]) for spk in data.speakers if spk in genders]
                write_table(staging / "spk2gender", known)
                warn_about(
                    [spk for spk in data.speakers if spk not in genders],
                    f"speakers of {subset} are not in {speakers_file}",
                    "no gender",
                )
            if trials is not None:
                write_trials(staging / "trials", _counted(trials, counts))
                checksum = file_sha256(staging / "trials")
        data.path = out / name
        result.data[name] = data
        result.unreadable += measured.unreadable
        result.misnamed += misnamed
        left_out = len(measured.unreadable) + len(misnamed)
        rows.append(SetCounts.of(name, data, left_out, LIBRISPEECH_SUBSETS[subset]))
        if trials is not None:
            how = "every pair" if num_trials is None else f"{num_trials:,} asked, seed {seed}"
            listed = DrawnTrials(f"{name}/trials", "protocol" if protocol else how, *counts, checksum)
            result.trials[name], result.lists[name] = listed.trials, listed
            trial_rows.append(listed)
    caption = "found / official; left out: unreadable or misnamed files"
    lists = [drawn_trials_table(trial_rows, "chapters")] if trial_rows else []
    print_tables(sets_table(f"LibriSpeech in {root}", rows, caption), *lists)
    return result
