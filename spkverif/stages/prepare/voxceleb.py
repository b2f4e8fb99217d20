"""`prepare voxceleb1` and `prepare voxceleb2`: the official trees as Kaldi data directories.

Utterance ids are Kaldi's (egs/voxceleb/v1/local/make_voxceleb1_v2.pl):
`<speaker>-<YouTube id>-<clip>`, e.g. `id10270-x6uYqmx31kE-00001` for
`wav/id10270/x6uYqmx31kE/00001.wav`. Every id starts with its speaker, and every
speaker id has the same length, so sorting by utterance also groups by speaker,
as Kaldi's scripts expect. VoxCeleb2 ids are formed the same way (Kaldi
upper-cases them; we keep the corpus's own lower case, as WeSpeaker does).

The VoxCeleb1 verification split is by speaker: id10270-id10309 are the 40 test
speakers, the other 1,211 the development set; `vox1_meta.csv` (column Set) says
the same and is used instead when given. `iden_split.txt` is the *identification*
split of all 1,251 speakers and says nothing about verification, so it is not read.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import warn_about
from spkverif.base.workers import JOBS
from spkverif.io.datadir import DataDir, save_fresh
from spkverif.io.mp4 import mp4_audio_duration
from spkverif.io.tables import read_text_lines, write_table
from spkverif.io.trials import read_trials, write_trials
from spkverif.stages.decode import DecodeOptions, decode_data_dir, save_decoded
from spkverif.stages.prepare.directory import (
    AudioEntry,
    data_dir_from,
    drop_duplicates,
    measure_durations,
    soundfile_duration,
    walk_corpus_tree,
)
from spkverif.stages.prepare.summary import Reference, SetCounts, TrialCounts, print_tables, sets_table, trials_table

logger = logging.getLogger(__name__)

SPEAKER_DIR = re.compile(r"^id\d+$")
VOX1_TEST_SPEAKERS = frozenset(f"id{number}" for number in range(10270, 10310))
SAMPLE_RATE = 16000

# Speakers and utterances: the VoxCeleb1/2 papers and site. Hours of the subsets:
# as measured in PaddleSpeech's examples/voxceleb/README.md (VoxCeleb1 in all: 352 h).
VOX1_REFERENCE = {
    "vox1_dev": Reference(1211, 148642, 340.4),
    "vox1_test": Reference(40, 4874, 11.2),
    "vox1": Reference(1251, 153516, 352),
}
VOX2_REFERENCE = {
    "dev": Reference(5994, 1092009, 2360.2),
    "test": Reference(118, 36237, 79.9),
}


@dataclass(frozen=True)
class TrialList:
    """One official VoxCeleb1 trial list: its cleaned file, and the original it replaced."""

    name: str
    file_name: str
    trials: int
    original_file_name: str
    original_trials: int


TRIAL_LISTS = (
    TrialList("O", "veri_test2.txt", 37611, "veri_test.txt", 37720),
    TrialList("E", "list_test_all2.txt", 579818, "list_test_all.txt", 581480),
    TrialList("H", "list_test_hard2.txt", 550894, "list_test_hard.txt", 552536),
)


@dataclass
class VoxCelebResult:
    """What a prepare wrote: data directories by name, counts of each trial list."""

    data: dict[str, DataDir]
    trials: dict[str, TrialCounts]
    unreadable: list[str]
    duplicates: list[str]


def voxceleb_key(path: str) -> str:
    """`id10270/x6uYqmx31kE/00001.wav` -> `id10270-x6uYqmx31kE-00001`; ids without `/` are kept."""
    if "/" not in path:
        return path
    parts = path.split("/")[-3:]
    parts[-1] = os.path.splitext(parts[-1])[0]
    return "-".join(parts)


def _has_speakers(directory: Path) -> bool:
    try:
        return any(entry.is_dir() and SPEAKER_DIR.match(entry.name) for entry in os.scandir(directory))
    except OSError:
        return False


def speaker_roots(root: Path, candidates: list[Path]) -> list[Path]:
    """The candidates (in order, each once) that hold `idNNNNN` speaker directories."""
    found: list[Path] = []
    for candidate in candidates:
        if candidate.is_dir() and _has_speakers(candidate) and candidate.resolve() not in [f.resolve() for f in found]:
            found.append(candidate)
    if not found:
        looked = ", ".join(str(c) for c in candidates)
        raise SpkverifError(f"no idNNNNN speaker directories found (looked in {looked})", root)
    return found


def scan_speakers(roots: list[Path], extension: str) -> list[AudioEntry]:
    """Every `<root>/<speaker>/<video>/<clip><extension>`, ids `speaker-video-clip`, sorted by id."""
    found = []
    for root in roots:
        for speaker, video, clip in walk_corpus_tree(root):
            stem, suffix = os.path.splitext(clip.name)
            if suffix.lower() == extension and SPEAKER_DIR.match(speaker.name):
                utt = f"{speaker.name}-{video.name}-{stem}"
                found.append(AudioEntry(speaker.name, utt, Path(clip.path)))
    found.sort(key=lambda entry: entry.utt.encode())
    return found


def read_vox1_meta(path: Path) -> dict[str, tuple[str, str]]:
    """speaker -> (set, gender) from vox1_meta.csv (tab-separated, or comma-separated as some copies are)."""
    if not path.is_file():
        raise SpkverifError("no such file", path)
    table: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    for number, line in read_text_lines(path):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t" if "\t" in line else ",")]
        if not SPEAKER_DIR.match(fields[0]):
            if number == 1:
                continue
            raise SpkverifError(f"expected a speaker id such as id10001, found {fields[0]!r}", path, number)
        if len(fields) < 5 or fields[4] not in ("dev", "test"):
            raise SpkverifError("expected `id  name  gender  nationality  dev|test`", path, number)
        if fields[0] in table:
            raise SpkverifError(f"duplicate key {fields[0]!r} (first on line {first_line[fields[0]]})", path, number)
        table[fields[0]] = (fields[4], fields[2])
        first_line[fields[0]] = number
    if not table:
        raise SpkverifError("no speakers in the metadata file", path)
    return table


def _find_trial_list(spec: TrialList, given: Path | None, directory: Path | None) -> Path | None:
    if given is not None:
        if not given.is_file():
            raise SpkverifError(f"VoxCeleb1-{spec.name} trial list not found", given)
        return given
    if directory is None:
        return None
    for name in (spec.file_name, spec.original_file_name):
        if (directory / name).is_file():
            if name == spec.original_file_name:
                logger.warning("using the original, uncleaned %s: %s is not in %s", name, spec.file_name, directory)
            return directory / name
    return None


def convert_trials(source: Path, known: set[str]) -> tuple[list[tuple[str, str, bool]], list[str], int]:
    """Official-form trials as Kaldi-form rows over `known` ids.

    Returns the rows kept (in the list's order), the ids named but not known
    (sorted), and the number of lines read.
    """
    trials = read_trials(source)
    labels = trials.require_labels()
    rows = []
    missing: set[str] = set()
    for enroll, test, label in zip(trials.enroll, trials.test, labels, strict=True):
        enroll_key, test_key = voxceleb_key(enroll), voxceleb_key(test)
        absent = [key for key in (enroll_key, test_key) if key not in known]
        if absent:
            missing.update(absent)
        else:
            rows.append((enroll_key, test_key, bool(label)))
    return rows, sorted(missing), len(trials)


def _trial_note(spec: TrialList, lines: int) -> str:
    if lines == spec.trials:
        return "cleaned, complete"
    if lines == spec.original_trials:
        return "uncleaned original"
    return "not an official size"


def _write_trial_lists(out: Path, data: dict[str, DataDir], lists: dict[str, Path]) -> dict[str, TrialCounts]:
    counts: dict[str, TrialCounts] = {}
    all_utts = set(data["vox1"].utterances) if "vox1" in data else set()
    for spec in TRIAL_LISTS:
        (out / "vox1" / f"trials_{spec.name}").unlink(missing_ok=True)
        if spec.name == "O":
            (out / "vox1_test" / "trials").unlink(missing_ok=True)
        source = lists.get(spec.name)
        if source is None:
            continue
        rows, missing, lines = convert_trials(source, all_utts)
        name = f"vox1_{spec.name}"
        warn_about(
            [f"{key} (named by {source.name})" for key in missing],
            f"file(s) named by {source} are not in {out / 'vox1'}: "
            f"{lines - len(rows):,} of its {lines:,} trials dropped",
            "not found",
        )
        targets = []
        if rows:
            write_trials(out / "vox1" / f"trials_{spec.name}", rows)
            targets.append(str(out / "vox1" / f"trials_{spec.name}"))
        if spec.name == "O" and "vox1_test" in data:
            test_utts = set(data["vox1_test"].utterances)
            test_rows = [row for row in rows if row[0] in test_utts and row[1] in test_utts]
            if test_rows:
                write_trials(out / "vox1_test" / "trials", test_rows)
                targets.append(str(out / "vox1_test" / "trials"))
        counts[name] = TrialCounts(
            name, source.name, ", ".join(targets), lines, len(rows), len(missing), spec.trials, _trial_note(spec, lines)
        )
    return counts


def prepare_voxceleb1(
    root: str | Path,
    out: str | Path,
    trials_dir: str | Path | None = None,
    trial_lists: dict[str, str | Path | None] | None = None,
    meta: str | Path | None = None,
    jobs: int = JOBS,
) -> VoxCelebResult:
    """OUT/{vox1_dev,vox1_test,vox1}, and the O/E/H trial lists found in TRIALS_DIR (default ROOT) or given."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    given = {name.upper(): Path(path) for name, path in (trial_lists or {}).items() if path is not None}
    directory = Path(trials_dir) if trials_dir is not None else root
    if not directory.is_dir():
        raise SpkverifError("no such directory (--trials-dir)", directory)
    lists = {
        spec.name: found
        for spec in TRIAL_LISTS
        if (found := _find_trial_list(spec, given.get(spec.name), directory)) is not None
    }
    meta_path = Path(meta) if meta is not None else root / "vox1_meta.csv"
    speaker_meta = read_vox1_meta(meta_path) if meta is not None or meta_path.is_file() else None
    candidates = [root / "wav", *sorted(p / "wav" for p in root.iterdir() if p.is_dir()), root]
    entries, duplicates = drop_duplicates(scan_speakers(speaker_roots(root, candidates), ".wav"))
    if not entries:
        raise SpkverifError("no .wav files under <speaker>/<video>/", root)
    warn_about(duplicates, "files left out because another file has the same id", "duplicate")
    measured = measure_durations(entries, jobs, "prepare voxceleb1")
    if not measured.durations:
        raise SpkverifError("none of the audio files could be read", root)
    test_speakers = _test_speakers(entries, speaker_meta)
    data = _vox1_sets(entries, measured.durations, test_speakers, out)
    for name, part in data.items():
        save_fresh(part, out / name, stale=("trials", "trials_O", "trials_E", "trials_H"))
        if speaker_meta is not None:
            genders = [(spk, speaker_meta[spk][1]) for spk in part.speakers if spk in speaker_meta]
            write_table(out / name / "spk2gender", genders)
    trial_counts = _write_trial_lists(out, data, lists)
    unread = [entry for entry in entries if entry.utt not in measured.durations]
    left_out = {
        "vox1_dev": sum(entry.speaker not in test_speakers for entry in unread),
        "vox1_test": sum(entry.speaker in test_speakers for entry in unread),
        "vox1": len(unread) + len(duplicates),
    }
    rows = [SetCounts.of(name, part, left_out[name], VOX1_REFERENCE[name]) for name, part in data.items()]
    if not trial_counts:
        names = ", ".join(spec.file_name for spec in TRIAL_LISTS)
        logger.warning("no trial lists converted: give --trials-dir or --trials-o/-e/-h (%s)", names)
    if speaker_meta is not None:
        absent = sorted(set(speaker_meta) - set(data["vox1"].speakers))
        warn_about(absent, "speakers of the metadata file have no audio here", "speaker not found")
    tables = [sets_table(f"VoxCeleb1 in {root}", rows)]
    print_tables(*tables, *([trials_table(list(trial_counts.values()))] if trial_counts else []))
    return VoxCelebResult(data, trial_counts, measured.unreadable, duplicates)


def _vox1_sets(
    entries: list[AudioEntry], durations: dict[str, float], test_speakers: set[str], out: Path
) -> dict[str, DataDir]:
    """vox1_dev and vox1_test (each where it has speakers), and vox1."""
    data: dict[str, DataDir] = {}
    for name, is_test in (("vox1_dev", False), ("vox1_test", True)):
        part = data_dir_from([e for e in entries if (e.speaker in test_speakers) == is_test], durations)
        if part.utterances:
            data[name] = part
        else:
            logger.warning("no %s speakers found: %s not written", name.split("_")[1], out / name)
    data["vox1"] = data_dir_from(entries, durations)
    return data


def _test_speakers(entries: list[AudioEntry], speaker_meta: dict[str, tuple[str, str]] | None) -> set[str]:
    speakers = {entry.speaker for entry in entries}
    if speaker_meta is None:
        return speakers & VOX1_TEST_SPEAKERS
    unlisted = sorted(speakers - set(speaker_meta))
    if unlisted:
        logger.warning(
            "%d speakers are not in the metadata file (e.g. %s); split by the official test ids",
            len(unlisted),
            ", ".join(unlisted[:5]),
        )
    return {spk for spk in speakers if speaker_meta.get(spk, ("", ""))[0] == "test"} | (
        set(unlisted) & VOX1_TEST_SPEAKERS
    )


def ffmpeg_command(path: Path, ffmpeg: str = "ffmpeg") -> str:
    """A wav.scp pipe decoding any audio file to 16 kHz mono 16-bit WAV on stdout."""
    return (
        f"{shlex.quote(ffmpeg)} -nostdin -loglevel error -i {shlex.quote(str(path.resolve()))} "
        f"-vn -ac 1 -ar {SAMPLE_RATE} -acodec pcm_s16le -f wav - |"
    )


def prepare_voxceleb2(
    root: str | Path,
    out: str | Path,
    subset: str = "dev",
    audio_ext: str = "m4a",
    ffmpeg: str = "ffmpeg",
    jobs: int = JOBS,
    decode_to: str | Path | None = None,
    decode: DecodeOptions | None = None,
) -> VoxCelebResult:
    """OUT/vox2_<subset> from `<subset>/aac/<speaker>/<video>/<clip>.m4a` (or converted wav files).

    wav.scp decodes each m4a file through an `ffmpeg ... |` pipe, or, with `decode_to`,
    names files decoded once into that directory (spkverif.stages.decode: 16 kHz mono WAV or
    FLAC, resumable, failures listed and left out); `decode.part` decodes one share only
    and writes no data directory.
    """
    root, out = Path(root), Path(out)
    if subset not in VOX2_REFERENCE:
        raise SpkverifError(f"unknown VoxCeleb2 subset {subset!r} (dev or test)")
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    extension = "." + audio_ext.lower().lstrip(".")
    folders = list(dict.fromkeys(("aac",) if extension == ".m4a" else (extension[1:], "wav", "aac")))
    candidates = [root / subset / folder for folder in folders] + [root / subset]
    if subset == "test":
        candidates += [root / folder for folder in folders]
    candidates.append(root)
    entries, duplicates = drop_duplicates(scan_speakers(speaker_roots(root, candidates)[:1], extension))
    if not entries:
        raise SpkverifError(f"no {extension} files under <speaker>/<video>/ (wrong --audio-ext?)", root)
    warn_about(duplicates, "files left out because another file has the same id", "duplicate")
    name = f"vox2_{subset}"
    if decode_to is not None:
        options = decode or DecodeOptions(jobs=jobs)
        return _decode_voxceleb2(entries, duplicates, Path(decode_to), options, (root, subset, out / name))
    is_mp4 = extension in (".m4a", ".mp4")
    if is_mp4 and shutil.which(ffmpeg) is None:
        logger.warning("%s is not on PATH here: wav.scp is written, but reading it will need ffmpeg", ffmpeg)
    measure = mp4_audio_duration if is_mp4 else soundfile_duration
    measured = measure_durations(entries, jobs, "prepare voxceleb2", measure)
    data = data_dir_from(entries, measured.durations, (lambda p: ffmpeg_command(p, ffmpeg)) if is_mp4 else None)
    if not data.utterances:
        raise SpkverifError("none of the audio files could be read", root)
    save_fresh(data, out / name)
    _print_vox2_table(root, subset, data, len(measured.unreadable) + len(duplicates))
    return VoxCelebResult({name: data}, {}, measured.unreadable, duplicates)


def _print_vox2_table(root: Path, subset: str, data: DataDir, left_out: int) -> None:
    name = f"vox2_{subset}"
    print_tables(
        sets_table(f"VoxCeleb2 {subset} in {root}", [SetCounts.of(name, data, left_out, VOX2_REFERENCE[subset])])
    )


def _decode_voxceleb2(
    entries: list[AudioEntry],
    duplicates: list[str],
    audio_dir: Path,
    options: DecodeOptions,
    where: tuple[Path, str, Path],
) -> VoxCelebResult:
    """Decode the files into AUDIO_DIR/<speaker>/<utt>.<format>; `where` is (ROOT, subset, OUT),
    and OUT is written naming the decoded files (not with --part)."""
    source = DataDir(
        wav_scp={entry.utt: str(entry.path.resolve()) for entry in entries},
        utt2spk={entry.utt: entry.speaker for entry in entries},
    )
    result = decode_data_dir(source, audio_dir, options)
    if result.data is None:
        return VoxCelebResult({}, {}, result.failures, duplicates)
    root, subset, out = where
    save_decoded(result, out)
    _print_vox2_table(root, subset, result.data, len(result.failures) + len(duplicates))
    return VoxCelebResult({out.name: result.data}, {}, result.failures, duplicates)
