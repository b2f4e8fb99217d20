"""Decoders of compressed audio files (VoxCeleb2's AAC `.m4a`, or anything FFmpeg reads)
to 16-bit mono PCM at a chosen rate, by name.

- `pyav`: FFmpeg's libraries in this process through PyAV (the `av` wheel ships them,
  so no system ffmpeg is needed). The default: it measured 23 times faster than an
  ffmpeg process per file on VoxCeleb2-like 7.8 s AAC files (241 against 10 files/s,
  docs/feeding.md), because starting a process and loading its codecs costs far more
  than decoding 8 s of AAC.
- `ffmpeg`: one `ffmpeg` process per file, the same decoder as the recipe's
  `ffmpeg ... |` wav.scp pipes; kept for comparison and for sites that must use
  their own ffmpeg build.

Both give the same samples (both are libavcodec's AAC decoder and libswresample),
which a test checks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import numpy as np

from spkverif.base.registry import Registry

Decoder = Callable[[str, int], np.ndarray]
DECODERS: Registry[Decoder] = Registry("decoder")


class DecodeError(ValueError):
    """A file that the decoder could not turn into audio; the message is the decoder's."""


@DECODERS.register("pyav")
def decode_pyav(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of `path` in-process (PyAV).

    Returns int16 samples, shape (T,), mono (channels averaged by libswresample) at
    `sample_rate` Hz. Raises DecodeError with FFmpeg's message for a file that has no
    audio stream or cannot be decoded.
    """
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise DecodeError("no audio stream")
            stream = container.streams.audio[0]
            pieces = _decode_stream(container, stream, sample_rate)
    except av.FFmpegError as error:
        raise DecodeError(str(error)) from None
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(pieces).astype(np.int16, copy=False)


def _decode_stream(container: object, stream: object, sample_rate: int) -> list[np.ndarray]:
    """Frames of one stream as int16 pieces. Float mono audio already at the rate (VoxCeleb2's
    AAC) is converted here, as libswresample does (round to nearest, clip), which is twice as
    fast as passing it through a resampler; anything else goes through libswresample."""
    import av

    codec = stream.codec_context  # type: ignore[attr-defined]
    direct = codec.sample_rate == sample_rate and codec.layout.nb_channels == 1 and codec.format.name in ("flt", "fltp")
    pieces = []
    if direct:
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            scaled = np.rint(frame.to_ndarray().reshape(-1) * 32768.0)
            pieces.append(np.clip(scaled, -32768, 32767).astype(np.int16))
        return pieces
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    for frame in container.decode(stream):  # type: ignore[attr-defined]
        pieces.extend(converted.to_ndarray().reshape(-1) for converted in resampler.resample(frame))
    pieces.extend(converted.to_ndarray().reshape(-1) for converted in resampler.resample(None))
    return pieces


@DECODERS.register("ffmpeg")
def decode_ffmpeg(path: str, sample_rate: int = 16000, ffmpeg: str = "ffmpeg") -> np.ndarray:
    """Decode `path` with one `ffmpeg` process to raw 16-bit mono PCM on its stdout.

    Returns int16 samples, shape (T,). Raises DecodeError with ffmpeg's last error line
    when it exits non-zero, and when the ffmpeg command is not found.
    """
    command = [ffmpeg, "-nostdin", "-loglevel", "error", "-i", path, "-vn", "-ac", "1", "-ar", str(sample_rate)]
    command += ["-f", "s16le", "-acodec", "pcm_s16le", "-"]
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise DecodeError(f"{ffmpeg} is not on PATH") from None
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise DecodeError(lines[-1] if lines else f"ffmpeg exited with status {result.returncode}")
    return np.frombuffer(result.stdout[: len(result.stdout) // 2 * 2], dtype="<i2").astype(np.int16)
