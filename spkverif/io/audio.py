"""Audio behind wav.scp entries: files (soundfile), `cmd |` pipes and Kaldi wav arks.

Everything comes back as mono float32 in [-1, 1] at the sample rate asked for; a
different rate is an error unless resampling was asked for (`--resample`).
"""

from __future__ import annotations

import io
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import soundfile

from spkverif.errors import SpkverifError
from spkverif.io.datadir import DataDir


def is_pipe(spec: str) -> bool:
    return spec.rstrip().endswith("|")


def _is_ark_offset(spec: str) -> bool:
    head, _, tail = spec.rpartition(":")
    return bool(head) and tail.isdigit()


def _locate(wav_scp: Path | None, key: str) -> int | None:
    """The line of `key` in wav.scp, looked up only when an error needs it."""
    if wav_scp is None or not wav_scp.is_file():
        return None
    with open(wav_scp, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.split(maxsplit=1)[:1] == [key]:
                return number
    return None


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


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional

    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return torchaudio.functional.resample(tensor, rate, target_rate).numpy()


@dataclass
class AudioReader:
    """Read utterances of a data directory (or a bare wav.scp) as mono float32."""

    wav_scp: dict[str, str]
    segments: dict | None = None
    sample_rate: int = 16000
    allow_resample: bool = False
    wav_scp_path: Path | None = None

    @classmethod
    def from_data_dir(cls, data: DataDir, sample_rate: int = 16000, allow_resample: bool = False) -> AudioReader:
        path = data.path / "wav.scp" if data.path is not None else None
        return cls(data.wav_scp, data.segments, sample_rate, allow_resample, path)

    def _fail(self, key: str, message: str) -> SpkverifError:
        return SpkverifError(message, self.wav_scp_path or "wav.scp", _locate(self.wav_scp_path, key))

    def _bounds(self, utt: str) -> tuple[str, str, float, float | None]:
        if self.segments is not None:
            if utt not in self.segments:
                raise SpkverifError(f"utterance {utt!r} has no segment")
            segment = self.segments[utt]
            recording, start, end = segment.recording, segment.start, segment.end
        else:
            recording, start, end = utt, 0.0, None
        if recording not in self.wav_scp:
            raise self._fail(recording, f"{recording!r} is not in wav.scp")
        return recording, self.wav_scp[recording], start, end

    def read(self, utt: str, offset: int = 0, num_samples: int | None = None) -> np.ndarray:
        """Samples [offset, offset + num_samples) of an utterance at `sample_rate`."""
        recording, spec, start, end = self._bounds(utt)
        try:
            if is_pipe(spec) or _is_ark_offset(spec):
                samples, rate = self._decode_whole(spec)
                first = round(start * rate)
                last = None if end is None else round(end * rate)
                samples = samples[first:last]
                return self._finish(recording, samples, rate, offset, num_samples, cropped=False)
            info = soundfile.info(spec)
            rate = info.samplerate
            if rate != self.sample_rate:
                samples, _ = soundfile.read(spec, dtype="float32", always_2d=True)
                first = round(start * rate)
                last = None if end is None else round(end * rate)
                return self._finish(recording, samples[first:last], rate, offset, num_samples, cropped=False)
            first = round(start * rate) + offset
            stop = None if end is None else round(end * rate)
            if num_samples is not None:
                stop = first + num_samples if stop is None else min(stop, first + num_samples)
            samples, _ = soundfile.read(spec, start=first, stop=stop, dtype="float32", always_2d=True)
            return self._finish(recording, samples, rate, 0, None, cropped=True)
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

    def _finish(
        self, recording: str, samples: np.ndarray, rate: int, offset: int, num_samples: int | None, cropped: bool
    ) -> np.ndarray:
        mono = np.ascontiguousarray(samples[:, 0], dtype=np.float32)
        if rate != self.sample_rate:
            if not self.allow_resample:
                raise self._fail(
                    recording,
                    f"{recording!r} is sampled at {rate} Hz, not {self.sample_rate} Hz (pass --resample to convert)",
                )
            mono = resample(mono, rate, self.sample_rate)
        if not cropped:
            stop = None if num_samples is None else offset + num_samples
            mono = mono[offset:stop]
        return mono

    def num_samples(self, utt: str) -> int:
        """Length at `sample_rate`; files are measured from their headers, pipes are decoded."""
        recording, spec, start, end = self._bounds(utt)
        if end is not None:
            return round((end - start) * self.sample_rate)
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
                f"{recording!r} is sampled at {rate} Hz, not {self.sample_rate} Hz (pass --resample to convert)",
            )
        total = frames * self.sample_rate / rate
        return round(total - start * self.sample_rate)
