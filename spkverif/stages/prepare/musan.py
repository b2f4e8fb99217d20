"""`prepare musan`: MUSAN's noise, music and speech as Kaldi data directories for augmentation.

The layout is ROOT/{noise,music,speech}/<source>/<subset>-<source>-NNNN.wav (with
ANNOTATIONS and LICENSE files beside, not needed here). File names are unique across
the corpus, so the utterance id is the file name without `.wav`. Each recording is
its own "speaker", as in Kaldi's make_musan.py: noise and music have no speakers, and
an augmenter mixing several speech recordings into babble wants them told apart.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import warn_about
from spkverif.base.workers import JOBS
from spkverif.io.datadir import DataDir, save_fresh
from spkverif.stages.prepare.directory import AudioEntry, clean_id, data_dir_from, drop_duplicates, measure_durations
from spkverif.stages.prepare.summary import Reference, SetCounts, print_tables, sets_table

logger = logging.getLogger(__name__)

SUBSETS = ("noise", "music", "speech")
# Approximate sizes given for MUSAN (about 109 hours in all).
REFERENCE = {
    "musan_noise": Reference(hours=6),
    "musan_music": Reference(hours=42),
    "musan_speech": Reference(hours=60),
    "musan": Reference(hours=109),
}


def corpus_root(root: Path, parts: tuple[str, ...], name: str) -> Path:
    """ROOT itself, or ROOT/NAME, whichever holds at least one of `parts`."""
    for candidate in (root, root / name):
        if any((candidate / part).is_dir() for part in parts):
            return candidate
    raise SpkverifError(f"none of {', '.join(parts)} found in ROOT or ROOT/{name}", root)


def wav_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())


def prepare_musan(root: str | Path, out: str | Path, jobs: int = JOBS) -> dict[str, DataDir]:
    """OUT/musan_{noise,music,speech} and OUT/musan (all three)."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    base = corpus_root(root, SUBSETS, "musan")
    by_subset: dict[str, list[AudioEntry]] = {}
    source_of: dict[Path, str] = {}
    for subset in SUBSETS:
        if not (base / subset).is_dir():
            logger.warning("%s is missing: musan_%s not written", base / subset, subset)
            continue
        by_subset[subset] = []
        for path in wav_files(base / subset):
            utt = clean_id(path.stem)
            by_subset[subset].append(AudioEntry(utt, utt, path))
            source_of[path] = path.relative_to(base / subset).parts[0] if path.parent != base / subset else subset
    entries, duplicates = drop_duplicates(entry for subset in by_subset.values() for entry in subset)
    warn_about(duplicates, "files left out because another file has the same name", "duplicate")
    if not entries:
        raise SpkverifError("no .wav files in the MUSAN subsets", base)
    measured = measure_durations(entries, jobs, "prepare musan")
    survivors = {entry.path for entry in entries}
    data: dict[str, DataDir] = {}
    rows: list[SetCounts] = []
    everything = [entry for subset in by_subset.values() for entry in subset]
    for subset, subset_entries in [*by_subset.items(), ("", everything)]:
        name = f"musan_{subset}" if subset else "musan"
        unique = [entry for entry in subset_entries if entry.path in survivors]
        part = data_dir_from(unique, measured.durations)
        if not part.utterances:
            logger.warning("no readable audio for %s: not written", name)
            continue
        save_fresh(part, out / name)
        data[name] = part
        sources = Counter(source_of[entry.path] for entry in unique if entry.utt in measured.durations)
        note = ", ".join(f"{source} {count}" for source, count in sorted(sources.items())) if subset else ""
        left_out = len(subset_entries) - len(part.utterances)
        rows.append(SetCounts.of(name, part, left_out, REFERENCE[name], note))
    print_tables(sets_table(f"MUSAN in {base}", rows))
    return data
