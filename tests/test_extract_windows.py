"""Sliding-window extraction: the mean of window embeddings, batched across utterances, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from spkverif.io.specifiers import load_vectors
from spkverif.models import build_model
from spkverif.runtime import open_model
from spkverif.stages.extract import Windowing, embed_block_windowed
from spkverif.training.checkpoint import load_model, model_payload, save_atomic
from tests.conftest import write_wav

TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
RATE = 16000


class BatchSpy:
    """An embedder that records the shape of every batch it is given."""

    def __init__(self, model_file: Path):
        self.embedder = open_model(model_file, "cpu")
        self.embedding_dim = self.embedder.embedding_dim
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        self.shapes.append(tuple(waveforms.shape))
        return self.embedder(waveforms)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "final.pt"
    save_atomic(model_payload(build_model("xvector", TINY)), path)
    return path


def test_window_starts_cover_the_utterance_and_end_flush() -> None:
    windowing = Windowing(window=3 * RATE, step=RATE)
    assert list(windowing.starts(10 * RATE)) == [s * RATE for s in range(8)]
    assert list(Windowing(3 * RATE, 2 * RATE).starts(10 * RATE)) == [0, 2 * RATE, 4 * RATE, 6 * RATE, 7 * RATE]
    assert list(windowing.starts(3 * RATE)) == [] and list(windowing.starts(RATE)) == []


def test_extract_with_window_is_the_mean_of_window_embeddings(run_cli, model_file: Path, tmp_path: Path) -> None:
    seconds = {"a_short": 1.5, "b_exact": 5.0, "c_tail": 7.3}
    files = {key: write_wav(tmp_path / f"{key}.wav", length, seed=i) for i, (key, length) in enumerate(seconds.items())}
    (tmp_path / "wav.scp").write_text("".join(f"{key} {path}\n" for key, path in files.items()))
    out = tmp_path / "windows.ark"
    result = run_cli(
        "extract", "-q", "--model", model_file, "--window", "2", "--step", "0.5", "--batch-size", "3",
        f"scp:{tmp_path / 'wav.scp'}", f"ark:{out}",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    keys, extracted = load_vectors(f"ark:{out}")
    assert keys == list(seconds)

    model = load_model(model_file)
    starts = {  # by hand: every 0.5 s while a 2 s window fits, then one window ending at the last sample
        "a_short": None,
        "b_exact": [0.5 * i for i in range(7)],
        "c_tail": [0.5 * i for i in range(11)] + [5.3],
    }
    with torch.no_grad():
        for row, key in enumerate(keys):
            audio = torch.from_numpy(soundfile.read(files[key], dtype="float32")[0])
            if starts[key] is None:
                expected = model(audio[None])[0]
            else:
                windows = [audio[round(s * RATE) : round(s * RATE) + 2 * RATE] for s in starts[key]]
                assert all(len(w) == 2 * RATE for w in windows)
                expected = torch.stack([model(w[None])[0] for w in windows]).mean(dim=0)
            np.testing.assert_allclose(extracted[row], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_windows_of_equal_length_batch_across_utterances(model_file: Path) -> None:
    spy = BatchSpy(model_file)
    rng = np.random.default_rng(0)
    audio = [rng.uniform(-0.3, 0.3, seconds * RATE).astype(np.float32) for seconds in (4, 4, 2, 4)]
    embeddings = embed_block_windowed(spy, audio, Windowing(3 * RATE, RATE), batch_size=4)
    assert spy.shapes == [(4, 3 * RATE), (2, 3 * RATE), (1, 2 * RATE)]
    assert len(embeddings) == 4 and all(e.shape == (8,) for e in embeddings)


def test_ten_minute_recording_is_processed_in_bounded_batches(model_file: Path) -> None:
    spy = BatchSpy(model_file)
    recording = np.random.default_rng(1).uniform(-0.3, 0.3, 600 * RATE).astype(np.float32)
    windowing = Windowing(RATE, 2 * RATE)
    batch_size = 16
    tracemalloc.start()
    try:
        (embedding,) = embed_block_windowed(spy, [recording], windowing, batch_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(shape[0] for shape in spy.shapes) == 301  # starts 0, 2, ..., 598 s and 599 s
    assert max(shape[0] for shape in spy.shapes) <= batch_size
    assert {shape[1] for shape in spy.shapes} == {RATE}
    batch_bytes = batch_size * RATE * 4
    all_windows_bytes = 301 * RATE * 4
    assert peak < 3 * batch_bytes < all_windows_bytes / 5
    assert np.isfinite(embedding).all()


def test_window_options_are_checked(run_cli, model_file: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\n")
    arguments = ["extract", "-q", "--model", model_file, f"scp:{tmp_path / 'wav.scp'}", f"ark:{tmp_path / 'e.ark'}"]
    for options, message in (
        (["--step", "0.5"], "--step needs --window"),
        (["--window", "0.1"], "shorter than the model's shortest input"),
        (["--window", "2", "--step", "0"], "'--step': 0.0 is not in the range x>0"),
    ):
        result = run_cli(*arguments, *options)
        assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
