"""Sample corpora the benchmarks share: VoxCeleb2-like utterances cut from real speech.

The speech is ../shared/data/librispeech (or $SPKVERIF_LIBRISPEECH); without it, noise
of the same length stands in and a note says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile

from tests.fake_corpora import write_m4a

VOX2_FILES = 1_092_009
VOX2_HOURS = 2360.2
MEAN_SECONDS = VOX2_HOURS * 3600 / VOX2_FILES  # 7.78 s, VoxCeleb2 dev's mean utterance
LIBRISPEECH = Path(
    os.environ.get("SPKVERIF_LIBRISPEECH", Path(__file__).resolve().parents[2] / "shared/data/librispeech")
)


def speech_sources(count: int, seconds: float = MEAN_SECONDS, seed: int = 0) -> list[np.ndarray]:
    """`count` float32 excerpts (T,) of `seconds` at 16 kHz from LibriSpeech FLAC files, or noise."""
    length = round(seconds * 16000)
    files = sorted(LIBRISPEECH.glob("LibriSpeech/*/*/*/*.flac"))
    rng = np.random.default_rng(seed)
    if not files:
        print(f"note: {LIBRISPEECH} not found: the sample is synthetic noise, not speech")
        return [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(count)]
    sources = []
    for index in range(count):
        samples = soundfile.read(files[index % len(files)], dtype="float32")[0]
        start = int(rng.integers(0, max(1, len(samples) - length)))
        sources.append(np.resize(samples[start:], length))
    return sources


def vox2_path(root: Path, index: int, extension: str, per_speaker: int = 10) -> Path:
    """ROOT/dev/<folder>/idNNNNN/video00001/NNNNN.<extension>, `per_speaker` files a speaker."""
    folder = "aac" if extension == "m4a" else extension
    speaker = f"id{index // per_speaker:05d}"
    return root / "dev" / folder / speaker / "video00001" / f"{index % per_speaker + 1:05d}.{extension}"


def make_m4a_tree(root: Path, count: int, per_speaker: int = 10) -> list[Path]:
    """A VoxCeleb2-layout tree of `count` AAC files of VoxCeleb2's mean length."""
    return [
        write_m4a(vox2_path(root, index, "m4a", per_speaker), samples, "aac")
        for index, samples in enumerate(speech_sources(count))
    ]
