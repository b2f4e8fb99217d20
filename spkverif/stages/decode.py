"""`spkverif data decode` (and `prepare voxceleb2 --decode-to`): decode every recording of a
data directory once, to 16 kHz mono 16-bit WAV or FLAC files, so training reads files
instead of running a decoder for every chunk.

- Each file is written atomically (a temporary file renamed into place), so a file under
  its real name is whole. A killed run continues where it stopped: a file already there
  is skipped after a cheap check of its header (16 kHz, mono, as many frames as the
  source's header promises, not older than the source).
- A recording that fails to decode is listed with its source and the decoder's message,
  counted, and left out of the data directory, which notes it in `decode_failures`.
- A full disk (ENOSPC, EDQUOT, EFBIG) stops the stage with one line; the temporary file
  is removed, and running again after freeing space resumes.
- `--part J/N` decodes only every N-th recording starting at the J-th, so N jobs of a
  cluster can share the work (the recipe runs them through cmd.sh's launcher); a final
  run without `--part` finds them done and writes the data directory.

The decoded lengths go to utt2dur. Kaldi decodes once into features
(`make_fbank.sh`), WeSpeaker converts VoxCeleb2 to WAV before packing shards.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from spkverif.base.errors import MachineError, SpkverifError
from spkverif.base.progress import ProgressBar, warn_about
from spkverif.base.workers import JOBS, worker_pool
from spkverif.io.atomic import atomic_write
from spkverif.io.audio import AudioReader, is_pipe
from spkverif.io.datadir import DataDir, Segment, load_data_dir, save_fresh
from spkverif.io.decoders import DECODERS, DecodeError
from spkverif.io.mp4 import mp4_audio_duration

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FORMATS = {"wav": "WAV", "flac": "FLAC"}
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
FAILURES_FILE = "decode_failures"
# A decoded file is taken as finished when its length is within this of the source
# header's: AAC priming and padding make the two differ by up to a frame (1,024 samples).
LENGTH_TOLERANCE_SECONDS = 0.1


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: output format (wav|flac), decoder by name (pyav|ffmpeg), worker
    processes, and the share of the work as (J, N) with 1 <= J <= N, or None for all."""

    audio_format: str = "wav"
    decoder: str = "pyav"
    jobs: int = JOBS
    part: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.audio_format not in FORMATS:
            raise SpkverifError(f"unknown audio format {self.audio_format!r}; choose one of: wav, flac")
        DECODERS.get(self.decoder)
        if self.jobs < 1:
            raise SpkverifError(f"--jobs must be at least 1, not {self.jobs}")
        if self.part is not None and not 1 <= self.part[0] <= self.part[1]:
            raise SpkverifError(f"--part must be J/N with 1 <= J <= N, not {self.part[0]}/{self.part[1]}")


@dataclass(frozen=True)
class _Task:
    recording: str
    source: str
    target: str
    audio_format: str
    decoder: str


@dataclass(frozen=True)
class _Outcome:
    recording: str
    frames: int = 0
    skipped: bool = False
    error: str | None = None
    full_disk: str | None = None


@dataclass
class DecodeResult:
    """The decoded data directory (None for a `--part` run), decoded lengths in samples by
    recording, how many files were already done, and the failures as `source: message` lines."""

    data: DataDir | None
    frames: dict[str, int]
    skipped: int
    failures: list[str] = field(default_factory=list)


def parse_part(text: str | None) -> tuple[int, int] | None:
    """`3/8` -> (3, 8); None stays None. Raises SpkverifError for anything else."""
    if text is None:
        return None
    job, _, total = text.partition("/")
    if not (job.isdigit() and total.isdigit()):
        raise SpkverifError(f"--part must be J/N such as 3/8, not {text!r}")
    return int(job), int(total)


def target_path(audio_dir: Path, recording: str, speaker: str | None, audio_format: str) -> Path:
    """AUDIO_DIR/<speaker>/<recording>.<format>; recordings without one speaker (segments)
    go to one of 256 buckets, so no directory holds a million files."""
    folder = speaker if speaker is not None else f"rec{zlib.crc32(recording.encode()) % 256:03d}"
    return audio_dir / folder / f"{recording}.{audio_format}"


def _expected_frames(source: str) -> int | None:
    """The length the source's header promises at 16 kHz; None for pipes, arks and unreadable headers."""
    if is_pipe(source) or not os.path.isfile(source):
        return None
    try:
        if source.lower().endswith((".m4a", ".mp4")):
            return round(mp4_audio_duration(source) * SAMPLE_RATE)
        info = soundfile.info(source)
        return round(info.frames * SAMPLE_RATE / info.samplerate)
    except (ValueError, RuntimeError, OSError):
        return None


def finished_frames(target: str, source: str) -> int | None:
    """Frames of an already decoded file that passes the cheap check, else None."""
    try:
        info = soundfile.info(target)
        if os.path.isfile(source) and os.path.getmtime(source) > os.path.getmtime(target):
            return None
    except (RuntimeError, OSError):
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames <= 0:
        return None
    expected = _expected_frames(source)
    if expected is not None and abs(info.frames - expected) > LENGTH_TOLERANCE_SECONDS * SAMPLE_RATE:
        return None
    return info.frames


def _read_source(task: _Task) -> np.ndarray:
    """int16 samples (T,) of a wav.scp entry: files through the decoder, pipes and arks through AudioReader."""
    if not is_pipe(task.source) and os.path.isfile(task.source):
        return DECODERS.get(task.decoder)(task.source, SAMPLE_RATE)
    reader = AudioReader({task.recording: task.source}, sample_rate=SAMPLE_RATE, allow_resample=True)
    samples = reader.read(task.recording)
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)


def write_audio(path: str | Path, samples: np.ndarray, audio_format: str) -> None:
    """Encode int16 samples (T,) in memory, then write them atomically; an OSError (a full
    disk) leaves nothing under `path`."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, format=FORMATS[audio_format], subtype="PCM_16")
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def _decode_one(task: _Task) -> _Outcome:
    frames = finished_frames(task.target, task.source)
    if frames is not None:
        return _Outcome(task.recording, frames, skipped=True)
    try:
        samples = _read_source(task)
    except (DecodeError, SpkverifError, ValueError, RuntimeError, OSError) as error:
        message = error.message if isinstance(error, SpkverifError) else str(error)
        return _Outcome(task.recording, error=f"{task.source}: {message}")
    if len(samples) == 0:
        return _Outcome(task.recording, error=f"{task.source}: decoded to no samples")
    try:
        write_audio(task.target, samples, task.audio_format)
    except (OSError, MachineError) as error:
        if error.errno in FULL_DISK:
            return _Outcome(task.recording, full_disk=f"{task.target}: {os.strerror(error.errno)}")
        return _Outcome(task.recording, error=f"{task.target}: cannot write: {error}")
    return _Outcome(task.recording, len(samples))


def _run(tasks: list[_Task], jobs: int) -> list[_Outcome]:
    with ProgressBar(len(tasks), "decode", unit="file") as bar:
        if jobs == 1:
            return _collect(map(_decode_one, tasks), bar)
        # spawn, not fork: a forked child of a process whose torch (OpenMP) threads ran can
        # deadlock in its first torch call (resampling), as seen under pytest.
        with worker_pool(jobs, "spawn") as pool:
            return _collect(pool.imap_unordered(_decode_one, tasks, chunksize=8), bar)


def _collect(results: Iterator[_Outcome], bar: ProgressBar) -> list[_Outcome]:
    outcomes = []
    for outcome in results:
        if outcome.full_disk is not None:
            raise SpkverifError(
                f"out of space ({outcome.full_disk}); free space and run again: finished files are kept"
            )
        outcomes.append(outcome)
        bar.advance(1)
    return outcomes


def decode_data_dir(source: DataDir, audio_dir: str | Path, options: DecodeOptions) -> DecodeResult:
    """Decode every recording of `source` into AUDIO_DIR; the data directory naming the
    decoded files (without the failed recordings), or only the files with `options.part`.

    Raises SpkverifError for a full disk and when no recording could be decoded.
    """
    audio_dir = Path(audio_dir).resolve()
    speaker_of = source.utt2spk if source.segments is None else {}
    recordings = sorted(source.wav_scp)
    if options.part is not None:
        job, total = options.part
        recordings = recordings[job - 1 :: total]
    tasks = [
        _Task(
            rec,
            source.wav_scp[rec],
            str(target_path(audio_dir, rec, speaker_of.get(rec), options.audio_format)),
            options.audio_format,
            options.decoder,
        )
        for rec in recordings
    ]
    outcomes = _run(tasks, options.jobs)
    frames = {o.recording: o.frames for o in outcomes if o.error is None}
    failures = sorted(o.error for o in outcomes if o.error is not None)
    skipped = sum(o.skipped for o in outcomes)
    logger.info("decoded %d files, %d already done, %d failed", len(frames) - skipped, skipped, len(failures))
    if options.part is not None:
        warn_about(failures, f"of {len(tasks)} recordings of part {job}/{total} failed to decode", "decode failed")
        return DecodeResult(None, frames, skipped, failures)
    if not frames:
        raise SpkverifError("none of the recordings could be decoded", source.path)
    data = _decoded_data_dir(source, frames, {task.recording: task.target for task in tasks})
    return DecodeResult(data, frames, skipped, failures)


def _decoded_data_dir(source: DataDir, frames: dict[str, int], targets: dict[str, str]) -> DataDir:
    """`source` with wav.scp naming the decoded files and utt2dur their lengths, without failed recordings."""
    if source.segments is None:
        utts = [utt for utt in source.utt2spk if utt in frames]
        segments = None
        durations = {utt: frames[utt] / SAMPLE_RATE for utt in utts}
    else:
        segments = {utt: seg for utt, seg in source.segments.items() if seg.recording in frames}
        utts = [utt for utt in source.utt2spk if utt in segments]
        durations = {utt: _segment_seconds(segments[utt], frames[segments[utt].recording]) for utt in utts}
    return DataDir(
        wav_scp={rec: targets[rec] for rec in frames},
        utt2spk={utt: source.utt2spk[utt] for utt in utts},
        segments=segments,
        utt2dur=durations,
    )


def _segment_seconds(segment: Segment, frames: int) -> float:
    end = frames / SAMPLE_RATE if segment.end is None else min(segment.end, frames / SAMPLE_RATE)
    return max(end - segment.start, 0.0)


def save_decoded(result: DecodeResult, out: Path) -> None:
    """Write the data directory and its `decode_failures` note (removed when none failed)."""
    assert result.data is not None
    save_fresh(result.data, out, stale=(FAILURES_FILE,))
    if result.failures:
        with atomic_write(out / FAILURES_FILE) as handle:
            handle.writelines(f"{line}\n" for line in result.failures)
    warn_about(
        result.failures,
        f"recordings failed to decode and were left out of {out} (listed in {out / FAILURES_FILE})",
        "decode failed",
    )


def decode(data_dir: str | Path, out: str | Path, audio_dir: str | Path, options: DecodeOptions) -> DecodeResult:
    """The `data decode` stage: DATA_DIR's recordings decoded into AUDIO_DIR, the data directory to OUT."""
    source = load_data_dir(data_dir)
    result = decode_data_dir(source, audio_dir, options)
    if result.data is not None:
        save_decoded(result, Path(out))
    return result
