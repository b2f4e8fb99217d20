"""Audio for the benchmarks: crops of real LibriSpeech speech when `../shared/data/librispeech` is there.

The corpus is found beside the repository (as the tests find it) or through
SPKVERIF_LIBRISPEECH; without it the crops are synthetic (harmonic tones plus
noise), which times the same but does not exercise a voice detector.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000


def librispeech_root() -> Path | None:
    override = os.environ.get("SPKVERIF_LIBRISPEECH")
    root = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared/data/librispeech"
    return root if (root / "LibriSpeech").is_dir() else None


def utterances(count: int, min_seconds: float, max_seconds: float, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """`count` float32 waveforms (T,) at 16 kHz, each between min and max seconds long, and where they came from."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(min_seconds, max_seconds, count)
    root = librispeech_root()
    files = sorted((root / "LibriSpeech").rglob("*.flac")) if root else []
    waves = []
    for index, seconds in enumerate(lengths):
        wanted = round(seconds * SAMPLE_RATE)
        if files:
            audio, _ = soundfile.read(files[index % len(files)], dtype="float32")
            audio = np.resize(audio, max(wanted, len(audio)))
            start = int(rng.integers(0, len(audio) - wanted + 1))
            waves.append(np.ascontiguousarray(audio[start : start + wanted]))
        else:
            time = np.arange(wanted) / SAMPLE_RATE
            pitch = rng.uniform(90, 250)
            tone = sum(np.sin(2 * np.pi * pitch * k * time) / k for k in range(1, 8))
            waves.append((0.1 * tone + 0.01 * rng.standard_normal(wanted)).astype(np.float32))
    source = f"LibriSpeech crops ({len(files)} files)" if files else "synthetic harmonic tones (no LibriSpeech found)"
    return waves, source


def write_wav_scp(waves: list[np.ndarray], directory: Path) -> Path:
    """Write each waveform as 16-bit WAV and a wav.scp naming them; returns the wav.scp path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, wave in enumerate(waves):
        path = directory / f"utt{index:04d}.wav"
        soundfile.write(path, wave, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"utt{index:04d} {path}\n")
    scp = directory / "wav.scp"
    scp.write_text("".join(lines))
    return scp
