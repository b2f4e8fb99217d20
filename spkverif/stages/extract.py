"""The `extract` stage: audio in (wav.scp, a data directory or a wav ark), embeddings out.

Utterances are read in input order, a block at a time (at most `block_size`
utterances and about `max_block_seconds` of audio); inside a block those of
identical length share a forward pass, so every embedding is exactly the
whole-utterance embedding while memory stays bounded by the block.

With a window (`--window SEC --step SEC`, the paper's 3 s every 0.1 s), an
utterance's embedding is instead the mean of the embeddings of its windows:
starts 0, step, 2 step, ... and one more window ending at the last sample if the
steps miss the tail. Windows all have the same length, so they batch across the
utterances of a block, `batch_size` at a time: memory is bounded by one batch of
windows, however long the recording. Utterances no longer than the window are
embedded whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.base.memory import keep_freed_memory
from spkverif.base.progress import ProgressBar
from spkverif.io.audio import (
    NAMED_WARNINGS,
    OPTION_ADVICE,
    AudioReader,
    bad_sample,
    read_wav_ark,
    resample,
    select_channel,
    wrong_rate,
)
from spkverif.io.datadir import load_data_dir, read_segments
from spkverif.io.specifiers import ArchiveWriter, parse_specifier
from spkverif.io.tables import read_rest_of_line
from spkverif.runtime import DEVICE, Embedder, check_finite_embedding, embed_block, fit_length, open_models

logger = logging.getLogger(__name__)

DEFAULT_STEP_SECONDS = 0.1


@dataclass
class AudioSource:
    """Utterances in input order: (key, samples) pairs, and how many if known."""

    items: Iterator[tuple[str, np.ndarray]]
    total: int | None


def _read_all(keys: list[str], reader: AudioReader) -> Iterator[tuple[str, np.ndarray]]:
    for key in keys:
        yield key, reader.read(key)


def open_audio(
    source: str, sample_rate: int, allow_resample: bool, segments: str | None = None, channel: int | None = None
) -> AudioSource:
    """A data directory, `scp:wav.scp` (with optional segments) or `ark:` of Kaldi wav arks."""
    if Path(source).is_dir():
        data = load_data_dir(source)
        reader = AudioReader.from_data_dir(data, sample_rate, allow_resample, channel, OPTION_ADVICE)
        return AudioSource(_read_all(data.utterances, reader), len(data.utterances))
    spec = parse_specifier(source, writing=False)
    if spec.scp is not None:
        table = {key: value for key, (_, value) in read_rest_of_line(spec.scp).items()}
        segment_table = read_segments(segments) if segments is not None else None
        keys = list(segment_table) if segment_table is not None else list(table)
        reader = AudioReader(
            table, segment_table, sample_rate, allow_resample, Path(spec.scp), channel, channel_advice=OPTION_ADVICE
        )
        return AudioSource(_read_all(keys, reader), len(keys))
    if segments is not None:
        raise SpkverifError("--segments works with an scp: input or a data directory, not an ark")
    return AudioSource(_read_wav_ark(source, sample_rate, allow_resample, channel), None)


def _read_wav_ark(
    source: str, sample_rate: int, allow_resample: bool, channel: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Stream a Kaldi wav ark (what `wav-copy` writes) once, in order."""
    path = parse_specifier(source, writing=False).ark
    assert path is not None
    warned: set[str] = set()
    for key, samples, rate in read_wav_ark(path):
        if samples.shape[0] == 0:
            raise SpkverifError(f"recording {key!r} has no samples", path)
        try:
            audio = np.ascontiguousarray(select_channel(samples, key, channel, warned, OPTION_ADVICE), dtype=np.float32)
        except SpkverifError as error:
            raise SpkverifError(error.message, path) from None
        problem = bad_sample(audio, rate)
        if problem is not None:
            raise SpkverifError(f"recording {key!r} has {problem}", path)
        if rate != sample_rate:
            if not allow_resample:
                raise SpkverifError(wrong_rate(key, rate, sample_rate), path)
            audio = resample(audio, rate, sample_rate)
        yield key, audio


def _blocks(
    items: Iterator[tuple[str, np.ndarray]], size: int, max_samples: int
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Consecutive utterances, at most `size` of them and (unless one alone is longer) `max_samples` samples."""
    block: list[tuple[str, np.ndarray]] = []
    samples = 0
    for item in items:
        if block and samples + len(item[1]) > max_samples:
            yield block
            block, samples = [], 0
        block.append(item)
        samples += len(item[1])
        if len(block) == size:
            yield block
            block, samples = [], 0
    if block:
        yield block


@dataclass(frozen=True)
class Windowing:
    """Fixed-length windows every `step` samples, the last one flush with the end."""

    window: int
    step: int

    def starts(self, num_samples: int) -> range | list[int]:
        """Window starts in an utterance; empty when it is no longer than one window."""
        if num_samples <= self.window:
            return []
        last = num_samples - self.window
        starts = range(0, last + 1, self.step)
        if starts[-1] != last:
            return [*starts, last]
        return starts


def _window_batches(
    audio: list[np.ndarray], windowing: Windowing, batch_size: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    """(utterance of each window, windows) in batches of `batch_size`, built lazily."""
    owners: list[int] = []
    windows: list[np.ndarray] = []
    for position, samples in enumerate(audio):
        for start in windowing.starts(len(samples)):
            owners.append(position)
            windows.append(samples[start : start + windowing.window])
            if len(windows) == batch_size:
                yield owners, np.stack(windows)
                owners, windows = [], []
    if windows:
        yield owners, np.stack(windows)


def embed_block_windowed(
    embedder: Embedder, audio: list[np.ndarray], windowing: Windowing, batch_size: int
) -> list[np.ndarray]:
    """Mean window embedding (D,) per utterance (T,); utterances no longer than a window are embedded whole."""
    sums = [np.zeros(embedder.embedding_dim) for _ in audio]
    counts = [0] * len(audio)
    for owners, windows in _window_batches(audio, windowing, batch_size):
        embeddings = embedder(windows).astype(np.float64)
        for owner, embedding in zip(owners, embeddings, strict=True):
            sums[owner] += embedding
            counts[owner] += 1
    short = [position for position, count in enumerate(counts) if count == 0]
    results = [total / max(count, 1) for total, count in zip(sums, counts, strict=True)]
    whole = embed_block(embedder, [audio[i] for i in short], batch_size)
    for position, embedding in zip(short, whole, strict=True):
        results[position] = embedding
    return results


def make_windowing(model: Embedder, window: float | None, step: float | None) -> Windowing | None:
    """Check --window/--step against the model and turn them into samples."""
    if window is None:
        if step is not None:
            raise SpkverifError("--step needs --window")
        return None
    step = DEFAULT_STEP_SECONDS if step is None else step
    if window <= 0 or step <= 0:
        raise SpkverifError(f"--window and --step must be positive (got {window:g} and {step:g})")
    window_samples = round(window * model.sample_rate)
    step_samples = max(1, round(step * model.sample_rate))
    if window_samples < model.min_samples:
        raise SpkverifError(
            f"--window {window:g} s is shorter than the model's shortest input, "
            f"{model.min_samples / model.sample_rate:.3f} s"
        )
    return Windowing(window_samples, step_samples)


BATCH_SIZE = 16  # utterances of equal length, or windows, a forward pass (the `--batch-size` default)


def extract(
    model_path: str | Path | Sequence[str | Path],
    rspecifier: str,
    wspecifier: str,
    device: str = DEVICE,
    batch_size: int = BATCH_SIZE,
    block_size: int = 256,
    segments: str | None = None,
    allow_resample: bool = False,
    window: float | None = None,
    step: float | None = None,
    max_block_seconds: float = 1800.0,
    channel: int | None = None,
) -> dict[str, float]:
    """Run the extract stage with a model file of any kind (PyTorch, TorchScript or ONNX: `spkverif.runtime`),
    or with several as one ensemble (`spkverif.runtime.ensemble`: cosine scores the mean of theirs).

    `channel`: which channel of multi-channel audio to embed (None: channel 0, with a
    warning naming the recording, as Kaldi's `--channel -1`). Returns the number of
    utterances, the seconds of audio and the seconds taken. Raises `SpkverifError` for a
    bad model file, bad options, unreadable or empty audio, segments outside their
    recordings, and a reader of `ark:-` that closes early.
    """
    if batch_size < 1:
        raise SpkverifError(f"--batch-size must be positive, not {batch_size}")
    if channel is not None and channel < 0:
        raise SpkverifError(f"--channel must be 0 or more, not {channel}")
    keep_freed_memory()  # blocks of similar sizes, one after another (base/memory.py)
    model = open_models(model_path, device)
    windowing = make_windowing(model, window, step)
    source = open_audio(rspecifier, model.sample_rate, allow_resample, segments, channel)
    max_block_samples = round(max_block_seconds * model.sample_rate)
    padded: list[str] = []
    audio_seconds = 0.0
    count = 0
    started = time.monotonic()
    with ArchiveWriter(wspecifier) as writer, ProgressBar(source.total, "extract", unit="utt") as bar:
        for block in _blocks(source.items, block_size, max_block_samples):
            audio = []
            for key, samples in block:
                audio_seconds += len(samples) / model.sample_rate
                if len(samples) < model.min_samples:
                    padded.append(key)
                    samples = fit_length(samples, model.min_samples)
                audio.append(samples)
            if windowing is None:
                embeddings = embed_block(model, audio, batch_size)
            else:
                embeddings = embed_block_windowed(model, audio, windowing, batch_size)
            for (key, _), embedding in zip(block, embeddings, strict=True):
                check_finite_embedding(embedding, key)
                writer.write(key, embedding.astype(np.float32))
            count += len(block)
            bar.advance(len(block))
    if count == 0:
        raise SpkverifError("no utterances to extract", rspecifier)
    elapsed = time.monotonic() - started
    if padded:
        logger.warning(
            "%d utterance(s) were shorter than %d samples and were repeated to that length: %s%s",
            len(padded), model.min_samples, ", ".join(padded[:NAMED_WARNINGS]),
            "" if len(padded) <= NAMED_WARNINGS else ", ...",
        )  # fmt: skip
    logger.info(
        "extracted %d embeddings from %.1f s of audio in %.1f s (%.1f s of audio per second)",
        count,
        audio_seconds,
        elapsed,
        audio_seconds / max(elapsed, 1e-9),
    )
    return {"utterances": count, "audio_seconds": audio_seconds, "seconds": elapsed}
