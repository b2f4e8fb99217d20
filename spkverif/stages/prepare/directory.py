"""`prepare dir`: any ROOT/<speaker>/**/*.{wav,flac} tree as a Kaldi data directory.

Also the pieces every corpus preparer shares: measuring durations in parallel
while listing (not raising on) unreadable files, leaving duplicate ids out, and
turning what was found into a `DataDir`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar, warn_about
from spkverif.base.workers import JOBS
from spkverif.io.audio import bad_sample_in_file
from spkverif.io.datadir import DataDir, save_fresh
from spkverif.io.trials import write_trials
from spkverif.stages.prepare.summary import SetCounts, print_tables, sets_table
from spkverif.stages.prepare.trials import all_pairs, balanced_trials

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")
_BATCH = 4096


@dataclass(frozen=True)
class AudioEntry:
    """One audio file found on disk and the ids it will have."""

    speaker: str
    utt: str
    path: Path


@dataclass
class Measured:
    """Durations of the readable entries by id; the others as `path: why` lines."""

    durations: dict[str, float]
    unreadable: list[str] = field(default_factory=list)


def clean_id(text: str) -> str:
    """Kaldi ids hold no whitespace."""
    return re.sub(r"\s+", "_", text)


def utterance_id(speaker: str, relative: Path) -> str:
    """`speaker-<path below the speaker>` with `/` as `-`, the extension dropped, and no part said twice.

    A file name that already begins with the speaker and the folders above it
    (LibriSpeech's `1688/142285/1688-142285-0000.flac`) gives `1688-142285-0000`,
    not `1688-142285-1688-142285-0000`; `alice/day1/a.wav` gives `alice-day1-a`.
    """
    prefix = [speaker, *relative.parts[:-1]]
    stem = relative.stem
    for count in range(len(prefix), 0, -1):
        head = "-".join(prefix[:count]) + "-"
        if stem.startswith(head):
            stem = stem[len(head) :]
            break
    return clean_id("-".join([*prefix, stem]))


def find_audio(root: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[AudioEntry]:
    """Each audio file under ROOT/<speaker>/, its id from `utterance_id`."""
    found = []
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        speaker = clean_id(speaker_dir.name)
        files = sorted(p for p in speaker_dir.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            logger.warning("speaker directory %s holds no audio; skipped", speaker_dir)
        for path in files:
            found.append(AudioEntry(speaker, utterance_id(speaker, path.relative_to(speaker_dir)), path))
    return found


def session_of(entry: AudioEntry, root: Path) -> str:
    """The folder holding the file, below ROOT: one recording session (chapter, video, day)."""
    return str(entry.path.parent.relative_to(root))


def soundfile_duration(path: Path) -> float:
    """Seconds from the file header (wav, flac, ...); ValueError for empty audio, and for a float file
    holding a NaN, inf or out-of-range sample (`spkverif.io.audio.bad_sample_in_file`)."""
    info = soundfile.info(str(path))
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError("no samples")
    problem = bad_sample_in_file(path, info)
    if problem is not None:
        raise ValueError(f"holds {problem}")
    return info.frames / info.samplerate


def _try_measure(measure: Callable[[Path], float], path: Path) -> tuple[float | None, str | None]:
    try:
        seconds = measure(path)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        return None, str(error) or type(error).__name__
    if not seconds > 0:
        return None, "no samples"
    return seconds, None


def measure_durations(
    entries: Sequence[AudioEntry],
    jobs: int,
    description: str,
    measure: Callable[[Path], float] = soundfile_duration,
) -> Measured:
    """Read every duration with `jobs` threads; a file that cannot be read is listed, not fatal."""
    durations: dict[str, float] = {}
    unreadable: list[str] = []
    with ProgressBar(len(entries), description, unit="file") as bar, ThreadPoolExecutor(max(1, jobs)) as pool:
        for start in range(0, len(entries), _BATCH):
            batch = entries[start : start + _BATCH]
            for entry, (seconds, error) in zip(
                batch, pool.map(lambda e: _try_measure(measure, e.path), batch), strict=True
            ):
                if seconds is None:
                    unreadable.append(f"{entry.path}: {error}")
                else:
                    durations[entry.utt] = seconds
            bar.advance(len(batch))
    summary = f"of {len(entries)} files could not be read or hold no samples, and were left out"
    warn_about(unreadable, summary, "left out, unreadable or empty")
    return Measured(durations, unreadable)


def walk_corpus_tree(root: str | Path) -> Iterator[tuple[os.DirEntry, os.DirEntry, os.DirEntry]]:
    """Every `root/<speaker>/<folder>/<file>` of a corpus tree (VoxCeleb's videos, LibriSpeech's
    chapters) as (speaker, folder, file) entries, each level in name order; files directly under
    a speaker and folders below `<folder>` are not visited."""
    for speaker in sorted(os.scandir(root), key=lambda e: e.name):
        if not speaker.is_dir():
            continue
        for folder in sorted(os.scandir(speaker.path), key=lambda e: e.name):
            if not folder.is_dir():
                continue
            for item in sorted(os.scandir(folder.path), key=lambda e: e.name):
                if item.is_file():
                    yield speaker, folder, item


def drop_duplicates(entries: Iterable[AudioEntry]) -> tuple[list[AudioEntry], list[str]]:
    """Keep the first file of each utterance id; the others are returned as problems."""
    first: dict[str, AudioEntry] = {}
    duplicates = []
    for entry in entries:
        if entry.utt in first:
            duplicates.append(f"{entry.path}: id {entry.utt!r} already names {first[entry.utt].path}")
        else:
            first[entry.utt] = entry
    return list(first.values()), duplicates


def data_dir_from(
    entries: Iterable[AudioEntry], durations: dict[str, float], wav_entry: Callable[[Path], str] | None = None
) -> DataDir:
    """A DataDir of the entries that have a duration; wav.scp holds absolute paths unless told otherwise."""
    kept = [entry for entry in entries if entry.utt in durations]
    describe = wav_entry or (lambda path: str(path.resolve()))
    return DataDir(
        wav_scp={entry.utt: describe(entry.path) for entry in kept},
        utt2spk={entry.utt: entry.speaker for entry in kept},
        utt2dur={entry.utt: durations[entry.utt] for entry in kept},
    )


def prepare_dir(
    root: str | Path, out: str | Path, jobs: int = JOBS, num_trials: int | None = None, seed: int = 0
) -> DataDir:
    """OUT from ROOT/<speaker>/**/*.{wav,flac}; with `num_trials`, also OUT/trials.

    `num_trials` 0 writes every pair of utterances; N > 0 draws N pairs, half target,
    keyed by `seed` (`trials.balanced_trials`), a speaker's target pairs across folders
    (sessions) first. Raises SpkverifError
    for a missing ROOT, no audio, two files with one id, or no readable file.
    """
    root = Path(root)
    if num_trials is not None and num_trials == 1:
        raise SpkverifError("--trials must be 0 (every pair) or at least 2")
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    found = find_audio(root)
    if not found:
        raise SpkverifError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under ROOT/<speaker>/", root)
    seen: dict[str, Path] = {}
    for entry in found:
        if entry.utt in seen:
            raise SpkverifError(
                f"utterance id {entry.utt!r} would name both {seen[entry.utt]} and this file", entry.path
            )
        seen[entry.utt] = entry.path
    measured = measure_durations(found, jobs, "prepare dir")
    if not measured.durations:
        raise SpkverifError("none of the audio files could be read", root)
    data = data_dir_from(found, measured.durations)
    save_fresh(data, Path(out), stale=("trials",))
    note = ""
    if num_trials is not None:
        if num_trials == 0:
            trials = list(all_pairs(data.utt2spk))
        else:
            sessions = {entry.utt: session_of(entry, root) for entry in found if entry.utt in measured.durations}
            trials = balanced_trials(data.utt2spk, num_trials, seed, sessions)
        write_trials(Path(out) / "trials", trials)
        note = f"{len(trials):,} trials in {Path(out) / 'trials'}"
    row = SetCounts.of(str(out), data, len(measured.unreadable), note=note)
    print_tables(sets_table(f"prepare dir {root}", [row]))
    return data
