"""Audio behind wav.scp entries: files (soundfile), `cmd |` pipes and Kaldi wav arks.

Everything comes back as mono float32 in [-1, 1] at the sample rate asked for; a
different rate is an error unless resampling was asked for (`--resample`).

As Kaldi's feature extractors (`--channel`, default -1): a recording with several
channels is read from the channel asked for; with none asked for, from channel 0
with a warning naming the recording. A recording with no samples, or a segment that
starts past its recording's end (or ends more than `SEGMENT_OVERSHOOT` past it), is
an error naming the utterance and its line. So is audio with a sample that is not a
finite number or lies beyond `MAX_ABS_SAMPLE` (a float WAV holding NaN, inf or 1e29,
which would make every embedding computed from it NaN): the error names the
utterance and the time of the first such sample.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import kaldiio
import kaldiio.utils
import numpy as np
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar
from spkverif.io.datadir import DataDir, Segment
from spkverif.io.tables import locate_key

logger = logging.getLogger(__name__)

NAMED_WARNINGS = 3

# Full scale is ±1 (int16 audio is divided by 32768); float audio written at int16 scale
# (±32768) is still accepted. Beyond this, a frame's power spectrum (400 samples squared)
# nears float32's range, and no recording holds such values: the file is corrupt.
MAX_ABS_SAMPLE = 1e6


def is_pipe(spec: str) -> bool:
    return spec.rstrip().endswith("|")


def _is_ark_offset(spec: str) -> bool:
    head, _, tail = spec.rpartition(":")
    return bool(head) and tail.isdigit()


def _decode_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode audio bytes; streamed WAV (size fields 0 or 0xFFFFFFFF, as pipes write) too."""
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return samples, rate
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return _decode_streamed_wav(data)


def _decode_streamed_wav(data: bytes) -> tuple[np.ndarray, int]:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("the command's output is not audio that soundfile or a WAV parser can read")
    position, channels, rate, bits = 12, 1, 0, 16
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        body = position + 8
        if chunk == b"fmt ":
            audio_format, channels, rate = struct.unpack("<HHI", data[body : body + 8])
            bits = struct.unpack("<H", data[body + 14 : body + 16])[0]
            if audio_format not in (1, 0xFFFE) or bits != 16:
                raise ValueError("only 16-bit PCM is read from a streamed WAV")
        elif chunk == b"data":
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            pcm = np.frombuffer(data[body : end - (end - body) % (2 * channels)], dtype="<i2")
            return (pcm.reshape(-1, channels).astype(np.float32) / 32768.0), rate
        position = body + size + (size & 1)
    raise ValueError("no data chunk in the WAV stream")


def _read_key(handle: BinaryIO) -> str | None:
    """The next `key ` of an archive (leading white space skipped); None at the end."""
    key = bytearray()
    while True:
        byte = handle.read(1)
        if not byte:
            if key:
                raise ValueError(f"the archive ends inside the key {key.decode(errors='replace')!r}")
            return None
        if byte == b" " and key:
            return key.decode("utf-8", errors="replace")
        if not byte.isspace():
            key += byte


def read_wav_ark(path: str) -> Iterator[tuple[str, np.ndarray, int]]:
    """Entries of a Kaldi wav archive (what `wav-copy` writes): (key, samples (T, C) float32 in [-1, 1], rate).

    `path` is a file, `-` (standard input) or `cmd |`. Each entry's RIFF size is
    checked, so a truncated archive is a `SpkverifError` naming the entry rather than a
    shorter recording; an entry that is not a WAV (a feature matrix) is one too.
    """
    try:
        with kaldiio.utils.open_like_kaldi(path, "rb") as handle:
            while (key := _read_key(handle)) is not None:
                head = handle.read(8)
                if len(head) < 8 or head[:4] != b"RIFF":
                    raise SpkverifError(f"entry {key!r} is not a WAV (features, or a truncated archive?)", path)
                size = struct.unpack("<I", head[4:8])[0]
                body = handle.read(size)
                if len(body) < size:
                    raise SpkverifError(
                        f"entry {key!r} is cut short: {len(body) + 8} of {size + 8} bytes (a truncated archive?)", path
                    )
                samples, rate = _decode_wav_bytes(head + body)
                yield key, samples, rate
    except SpkverifError:
        raise
    except (OSError, ValueError, soundfile.LibsndfileError, RuntimeError) as error:
        raise SpkverifError(f"cannot read the wav archive: {error or type(error).__name__}", path) from None


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """`samples` (T,) at `rate` Hz as float32 at `target_rate` Hz: (ceil(T * target / rate),);
    unchanged when the rates are equal.

    The one resampler of audio read at another rate (every runtime of `extract` and
    `verify`, training with `data.resample`, `data decode`, `shard`, the telephone
    channel): scipy's polyphase filter (`scipy.signal.resample_poly`: the rate ratio
    reduced to up/down integers, a Kaiser-windowed (beta 5) FIR low-pass of 20 x
    max(up, down) + 1 taps, zero-phase). numpy and scipy only, so the ONNX path
    resamples without torch.
    """
    if rate == target_rate:
        return samples
    import scipy.signal

    common = math.gcd(rate, target_rate)
    return scipy.signal.resample_poly(samples, target_rate // common, rate // common).astype(np.float32)


# How a user picks another channel, said in the warning: a command with --channel (extract,
# verify) says so; the others (train, shard) read what wav.scp gives them.
OPTION_ADVICE = "choose one with --channel, as Kaldi's --channel"
PIPE_ADVICE = "choose one with a `sox FILE -t wav - remix N |` pipe in wav.scp"


def select_channel(
    samples: np.ndarray, recording: str, channel: int | None, warned: set[str], advice: str = PIPE_ADVICE
) -> np.ndarray:
    """Channel `channel` of (T, C) samples; with None, channel 0 and a warning the first few times
    (`warned` holds the recordings already named; `advice` says how to choose another). Raises
    `SpkverifError` for a channel the audio lacks."""
    channels = samples.shape[1]
    if channel is not None:
        if channel >= channels:
            raise SpkverifError(f"--channel {channel}, but {recording!r} has {channels} channel(s)")
        return samples[:, channel]
    if channels > 1 and recording not in warned:
        warned.add(recording)
        if len(warned) <= NAMED_WARNINGS:
            logger.warning(
                "%r has %d channels; reading channel 0 (%s)", recording, channels, advice,
            )  # fmt: skip
    return samples[:, 0]


def bad_sample(samples: np.ndarray, rate: int, start: int = 0) -> str | None:
    """None when every sample of `samples` (T,) is finite and within ±`MAX_ABS_SAMPLE`; else
    what and where the first bad one is (`a NaN sample at 1.234 s`), `start` being the
    position of `samples[0]` in its utterance, in samples at `rate` Hz. One pass over the
    samples where they are good (their maximum and minimum), the search only where not."""
    if samples.size == 0:
        return None
    if max(float(samples.max()), -float(samples.min())) <= MAX_ABS_SAMPLE:  # False for NaN
        return None
    bad = ~(np.abs(samples) <= MAX_ABS_SAMPLE)
    index = int(np.argmax(bad))
    value = float(samples[index])
    what = "a NaN sample" if math.isnan(value) else f"a sample of {value:g}"
    return f"{what} at {(start + index) / rate:.3f} s (audio must be finite, within ±{MAX_ABS_SAMPLE:g})"


FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
"""soundfile's subtypes whose samples can be NaN, inf or beyond full scale; integer PCM and compressed
formats decode to values within full scale, so only these need their samples read to be checked."""


def bad_sample_in_file(path: str | Path, info: soundfile._SoundFileInfo) -> str | None:
    """`bad_sample` of every channel of a float audio file (None without reading an integer one):
    the check a stage that reads only headers (prepare, validate) makes of what it cannot see there."""
    if info.subtype not in FLOAT_SUBTYPES:
        return None
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return bad_sample(samples.reshape(-1), rate * samples.shape[1])


def wrong_rate(recording: str, rate: int, expected: int) -> str:
    """The one message for audio at another rate than the model's (`rate`, `expected` in Hz)."""
    return f"{recording!r} is sampled at {rate} Hz, not {expected} Hz (pass --resample to convert)"


@dataclass
class AudioReader:
    """Read utterances of a data directory (or a bare wav.scp) as mono float32."""

    wav_scp: dict[str, str]
    segments: dict[str, Segment] | None = None
    sample_rate: int = 16000
    allow_resample: bool = False
    wav_scp_path: Path | None = None
    channel: int | None = None
    warned: set[str] = field(default_factory=set)
    channel_advice: str = PIPE_ADVICE

    @classmethod
    def from_data_dir(
        cls,
        data: DataDir,
        sample_rate: int = 16000,
        allow_resample: bool = False,
        channel: int | None = None,
        channel_advice: str = PIPE_ADVICE,
    ) -> AudioReader:
        path = data.path / "wav.scp" if data.path is not None else None
        return cls(
            data.wav_scp, data.segments, sample_rate, allow_resample, path, channel, channel_advice=channel_advice
        )

    def _fail(self, key: str, message: str) -> SpkverifError:
        return SpkverifError(message, self.wav_scp_path or "wav.scp", locate_key(self.wav_scp_path, key))

    def _empty(self, utt: str, recording: str) -> SpkverifError:
        what = f"utterance {utt!r}" if utt != recording else f"recording {recording!r}"
        return self._fail(recording, f"{what} has no samples")

    def _bounds(self, utt: str) -> tuple[str, str, Segment | None]:
        segment = None
        if self.segments is not None:
            if utt not in self.segments:
                raise SpkverifError(f"utterance {utt!r} has no segment")
            segment = self.segments[utt]
            recording = segment.recording
        else:
            recording = utt
        if recording not in self.wav_scp:
            raise self._fail(recording, f"{recording!r} is not in wav.scp")
        return recording, self.wav_scp[recording], segment

    def _span(self, segment: Segment | None, frames: int, rate: int) -> tuple[int, int]:
        """First and last frame of a segment (the whole recording without one), checked against its length."""
        if segment is None:
            return 0, frames
        start, end = segment.clip(frames / rate)
        return round(start * rate), min(frames, round(end * rate))

    def read(self, utt: str, offset: int = 0, num_samples: int | None = None) -> np.ndarray:
        """Samples [offset, offset + num_samples) of an utterance at `sample_rate`, shape (T,).

        Raises `SpkverifError` for unreadable audio, no samples, a segment outside its
        recording, a channel the recording lacks, or a rate other than `sample_rate`
        without `allow_resample`.
        """
        recording, spec, segment = self._bounds(utt)
        try:
            if is_pipe(spec) or _is_ark_offset(spec):
                samples, rate = self._decode_whole(spec)
                first, last = self._span(segment, samples.shape[0], rate)
                return self._finish(utt, recording, samples[first:last], rate, offset, num_samples, cropped=False)
            info = soundfile.info(spec)
            rate = info.samplerate
            first, last = self._span(segment, info.frames, rate)
            if rate != self.sample_rate:
                samples, _ = soundfile.read(spec, start=first, stop=last, dtype="float32", always_2d=True)
                return self._finish(utt, recording, samples, rate, offset, num_samples, cropped=False)
            first += offset
            stop = last if num_samples is None else min(last, first + num_samples)
            samples, _ = soundfile.read(spec, start=first, stop=stop, dtype="float32", always_2d=True)
            return self._finish(utt, recording, samples, rate, 0, None, cropped=True, start=offset)
        except SpkverifError:
            raise
        except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
            raise self._fail(recording, f"cannot read audio of {recording!r}: {error}") from None

    def _decode_whole(self, spec: str) -> tuple[np.ndarray, int]:
        if is_pipe(spec):
            command = spec.rstrip()[:-1]
            result = subprocess.run(command, shell=True, capture_output=True, check=False)
            if result.returncode != 0:
                detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise ValueError(f"command exited with status {result.returncode}: {detail[0]}")
            return _decode_wav_bytes(result.stdout)
        rate, samples = kaldiio.load_mat(spec)
        samples = np.asarray(samples)
        if samples.ndim == 1:
            samples = samples[:, None]
        if np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / 32768.0
        return samples.astype(np.float32), rate

    def _mono(self, recording: str, samples: np.ndarray) -> np.ndarray:
        try:
            return select_channel(samples, recording, self.channel, self.warned, self.channel_advice)
        except SpkverifError as error:
            raise self._fail(recording, error.message) from None

    def _finish(
        self,
        utt: str,
        recording: str,
        samples: np.ndarray,
        rate: int,
        offset: int,
        num_samples: int | None,
        cropped: bool,
        start: int = 0,
    ) -> np.ndarray:
        if samples.shape[0] == 0 and offset == 0:
            raise self._empty(utt, recording)
        mono = np.ascontiguousarray(self._mono(recording, samples), dtype=np.float32)
        problem = bad_sample(mono, rate, start)
        if problem is not None:
            what = f"utterance {utt!r}" if utt != recording else f"recording {recording!r}"
            raise self._fail(recording, f"{what} has {problem}")
        if rate != self.sample_rate:
            if not self.allow_resample:
                raise self._fail(
                    recording,
                    wrong_rate(recording, rate, self.sample_rate),
                )
            mono = resample(mono, rate, self.sample_rate)
        if not cropped:
            stop = None if num_samples is None else offset + num_samples
            mono = mono[offset:stop]
        return mono

    def num_samples(self, utt: str) -> int:
        """Length at `sample_rate`; files are measured from their headers, pipes are decoded
        (a segment of a pipe with an end is taken at its word, and checked when read)."""
        recording, spec, segment = self._bounds(utt)
        if segment is not None and segment.end is not None and is_pipe(spec):
            return round((segment.end - segment.start) * self.sample_rate)  # checked when read, not decoded twice
        try:
            if is_pipe(spec) or _is_ark_offset(spec):
                samples, rate = self._decode_whole(spec)
                frames = samples.shape[0]
            else:
                info = soundfile.info(spec)
                frames, rate = info.frames, info.samplerate
        except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
            raise self._fail(recording, f"cannot read audio of {recording!r}: {error}") from None
        if rate != self.sample_rate and not self.allow_resample:
            raise self._fail(
                recording,
                wrong_rate(recording, rate, self.sample_rate),
            )
        first, last = self._span(segment, frames, rate)
        if last <= first:
            raise self._empty(utt, recording)
        return round((last - first) * self.sample_rate / rate)


def measure_lengths(reader: AudioReader, utterances: list[str]) -> dict[str, int]:
    """Length in samples (at the reader's rate) of each utterance, measured from the audio:
    file headers where they tell, pipes and ark entries decoded. Raises `SpkverifError`
    for audio that cannot be read or holds no samples."""
    lengths = {}
    with ProgressBar(len(utterances), "measure durations", unit="utt") as bar:
        for utt in utterances:
            lengths[utt] = reader.num_samples(utt)
            bar.advance()
    return lengths


class PreloadedAudio:
    """Every utterance an `AudioReader` reads, decoded once into memory; chunks are cut from there.

    `read(utt, offset, num_samples)` gives the samples `AudioReader.read` gives for the same
    arguments, as a copy (the caller may change it), without opening a file; `num_samples(utt)`
    their count. For training sets that fit in memory: float32, 4 bytes a sample (an hour at
    16 kHz is 230 MB). Where the audio is compressed, decoding a chunk at a time is a sizeable
    part of a training step on a CPU (the shared LibriSpeech subset, FLAC: about 70 ms a batch of
    64 chunks of 2 s on 2 cores). The reader's errors (unreadable audio, no samples, a wrong
    rate) are raised while preloading, with the file and line; a chunk that starts past its
    utterance's end is asked of the reader, whose answer it is (for a file, "no samples").
    """

    def __init__(self, reader: AudioReader, utterances: Sequence[str]):
        self.reader = reader
        self.sample_rate = reader.sample_rate
        self.samples: dict[str, np.ndarray] = {}
        with ProgressBar(len(utterances), "preload audio", unit="utt") as bar:
            for utt in utterances:
                self.samples[utt] = reader.read(utt)
                bar.advance(1)
        megabytes = sum(samples.nbytes for samples in self.samples.values()) / 1e6
        logger.info("preloaded %d utterances: %.0f MB", len(self.samples), megabytes)

    def read(self, utt: str, offset: int = 0, num_samples: int | None = None) -> np.ndarray:
        """Samples [offset, offset + num_samples) of `utt`, shape (T,), float32 at `sample_rate`."""
        samples = self.samples[utt]
        if offset >= samples.shape[0] and offset > 0:  # past the end: the reader's own answer (for a file, an error)
            return self.reader.read(utt, offset, num_samples)
        stop = None if num_samples is None else offset + num_samples
        return samples[offset:stop].copy()

    def num_samples(self, utt: str) -> int:
        """Length at `sample_rate`."""
        return self.samples[utt].shape[0]
