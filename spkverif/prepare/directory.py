"""`prepare dir`: any ROOT/<speaker>/**/*.{wav,flac} tree as a Kaldi data directory."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile

from spkverif.errors import SpkverifError
from spkverif.io.datadir import DataDir
from spkverif.progress import ProgressBar

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")


def _clean(text: str) -> str:
    return re.sub(r"\s+", "_", text)


def find_audio(root: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[tuple[str, str, Path]]:
    """(speaker, utterance id, path) for each audio file, the id being `speaker-relative-path`."""
    found = []
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        speaker = _clean(speaker_dir.name)
        files = sorted(p for p in speaker_dir.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            logger.warning("speaker directory %s holds no audio; skipped", speaker_dir)
        for path in files:
            relative = path.relative_to(speaker_dir).with_suffix("")
            utt = _clean(f"{speaker}-{'-'.join(relative.parts)}")
            found.append((speaker, utt, path))
    return found


def _duration(path: Path) -> tuple[float | None, str | None]:
    try:
        info = soundfile.info(str(path))
        return info.frames / info.samplerate, None
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        return None, str(error)


def prepare_dir(root: str | Path, out: str | Path, jobs: int = 4) -> DataDir:
    root = Path(root)
    if not root.is_dir():
        raise SpkverifError("no such directory", root)
    found = find_audio(root)
    if not found:
        raise SpkverifError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under ROOT/<speaker>/", root)
    seen: dict[str, Path] = {}
    for _, utt, path in found:
        if utt in seen:
            raise SpkverifError(f"utterance id {utt!r} would name both {seen[utt]} and this file", path)
        seen[utt] = path
    durations: dict[str, float] = {}
    unreadable: list[str] = []
    with ProgressBar(len(found), "prepare dir", unit="file") as bar, ThreadPoolExecutor(max(1, jobs)) as pool:
        for (_, utt, path), (seconds, error) in zip(found, pool.map(_duration, (p for _, _, p in found)), strict=False):
            if seconds is None:
                unreadable.append(f"{path}: {error}")
            else:
                durations[utt] = seconds
            bar.advance()
    for line in unreadable[:20]:
        logger.warning("unreadable, left out: %s", line)
    if unreadable:
        logger.warning("%d of %d files could not be read and were left out", len(unreadable), len(found))
    kept = [(speaker, utt, path) for speaker, utt, path in found if utt in durations]
    if not kept:
        raise SpkverifError("none of the audio files could be read", root)
    data = DataDir(
        wav_scp={utt: str(path.resolve()) for _, utt, path in kept},
        utt2spk={utt: speaker for speaker, utt, _ in kept},
        utt2dur=durations,
    )
    data.save(out)
    logger.info(
        "%s: %d speakers, %d utterances, %.2f hours", out, len(data.speakers), len(kept), sum(durations.values()) / 3600
    )
    return data
