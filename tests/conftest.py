"""Shared fixtures: a tiny synthetic corpus and a CLI runner that keeps stderr apart."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from spkverif.cli import cli
from spkverif.stages.prepare.mini import MiniOptions, prepare_mini

TINY = MiniOptions(
    num_speakers=10, num_test_speakers=4, utts_per_speaker=4, min_seconds=1.0, max_seconds=1.6, num_trials=40, jobs=2
)


@pytest.fixture(autouse=True)
def _spkverif_log_level():
    """Each test starts with the `spkverif` logger's level unset, as a command starts: the benchmarks,
    run in-process by a module fixture, set it to WARNING (as their command lines ask), and a later test's
    INFO lines must not depend on the order the tests run in."""
    logging.getLogger("spkverif").setLevel(logging.NOTSET)
    yield


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: narrow networks gain nothing from threads, and on a busy machine
    their synchronisation can cost a hundredfold."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT/{train,test} with 6 + 4 synthetic speakers, 4 utterances each."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    prepare_mini(out, TINY)
    return out


@pytest.fixture
def run_cli():
    """Invoke `spkverif ARGS...` in-process; returns the click Result."""

    def run(*args: str, input: bytes | None = None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def write_data_dir(path: Path, files: dict[str, str], utt2spk: dict[str, str]) -> Path:
    """A minimal valid data directory from wav.scp entries and utt2spk."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(files.items())))
    (path / "utt2spk").write_text("".join(f"{k} {v}\n" for k, v in sorted(utt2spk.items())))
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    return path
