"""Several models as one (`extract/verify/report --model A --model B`): the ensemble's embedding, whose
cosine is the mean of its members' cosines, its fingerprint, and what it refuses."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.io.specifiers import load_vectors
from spkverif.models import build_model
from spkverif.runtime import open_model, open_models
from spkverif.training.checkpoint import model_payload, save_atomic
from tests.conftest import write_wav

TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}


def _model(path: Path, seed: int, sample_rate: int = 16000, embedding_dim: int = 8) -> Path:
    torch.manual_seed(seed)
    options = {**TINY, "embedding_dim": embedding_dim}
    save_atomic(model_payload(build_model("xvector", options, sample_rate=sample_rate)), path)
    return path


def _extract(run_cli, models: list[Path], scp: Path, out: Path) -> dict[str, np.ndarray]:
    arguments = [option for model in models for option in ("--model", model)]
    result = run_cli("extract", "-q", *arguments, f"scp:{scp}", f"ark:{out}")
    assert result.exit_code == 0, result.stderr
    keys, vectors = load_vectors(f"ark:{out}")
    return dict(zip(keys, vectors.astype(np.float64), strict=True))


def _cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(left @ right / np.linalg.norm(left) / np.linalg.norm(right))


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    scp = tmp_path / "wav.scp"
    lengths = {"a": 1.0, "b": 1.7, "c": 0.8, "d": 2.3}
    wavs = {key: write_wav(tmp_path / f"{key}.wav", length, seed=i) for i, (key, length) in enumerate(lengths.items())}
    scp.write_text("".join(f"{key} {path}\n" for key, path in wavs.items()))
    return scp


def test_the_ensembles_cosine_is_the_mean_of_its_members(run_cli, audio: Path, tmp_path: Path) -> None:
    first, second = _model(tmp_path / "m1.pt", 1), _model(tmp_path / "m2.pt", 2, embedding_dim=12)
    alone = [_extract(run_cli, [model], audio, tmp_path / f"{model.stem}.ark") for model in (first, second)]
    both = _extract(run_cli, [first, second], audio, tmp_path / "both.ark")
    assert all(vector.shape == (20,) for vector in both.values())
    for left, right in itertools.combinations(sorted(both), 2):
        mean = np.mean([_cosine(member[left], member[right]) for member in alone])
        assert _cosine(both[left], both[right]) == pytest.approx(mean, abs=1e-5)
    for key, vector in both.items():  # its length is the members' mean length (a QMF quality measure)
        assert np.linalg.norm(vector) == pytest.approx(np.mean([np.linalg.norm(m[key]) for m in alone]), rel=1e-5)
        # each member's part is that member's embedding, up to one positive scale
        part = vector[:8] / np.linalg.norm(vector[:8])
        np.testing.assert_allclose(part, alone[0][key] / np.linalg.norm(alone[0][key]), atol=1e-5)


def test_a_member_may_be_an_exported_file(run_cli, audio: Path, tmp_path: Path) -> None:
    first, second = _model(tmp_path / "m1.pt", 1), _model(tmp_path / "m2.pt", 2)
    scripted = tmp_path / "m2.ts"
    result = run_cli("export", "-q", "--format", "torchscript", "--model", second, scripted)
    assert result.exit_code == 0, result.stderr
    pytorch = _extract(run_cli, [first, second], audio, tmp_path / "pt.ark")
    mixed = _extract(run_cli, [first, scripted], audio, tmp_path / "mixed.ark")
    for key in pytorch:
        np.testing.assert_allclose(mixed[key], pytorch[key], atol=1e-5)
    assert open_models([first, scripted]).fingerprint == open_models([first, second]).fingerprint


def test_the_fingerprint_names_the_members_in_order(tmp_path: Path) -> None:
    first, second = _model(tmp_path / "m1.pt", 1), _model(tmp_path / "m2.pt", 2)
    pair, reversed_pair = open_models([first, second]), open_models([second, first])
    singles = {open_model(first).fingerprint, open_model(second).fingerprint}
    assert len({pair.fingerprint, reversed_pair.fingerprint} | singles) == 4
    assert pair.metadata["model"]["name"] == "ensemble" and len(pair.metadata["model"]["members"]) == 2
    assert open_models([first]).fingerprint == open_model(first).fingerprint  # one file is that model


def test_a_calibration_of_an_ensemble_is_refused_for_another(run_cli, tmp_path: Path) -> None:
    first, second = _model(tmp_path / "m1.pt", 1), _model(tmp_path / "m2.pt", 2)
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.5
    scores = np.where(labels, 0.6, 0.1) + 0.15 * rng.normal(size=400)
    trials, score_file = tmp_path / "trials", tmp_path / "scores"
    trials.write_text("".join(f"e{i} t{i} {'target' if t else 'nontarget'}\n" for i, t in enumerate(labels)))
    score_file.write_text("".join(f"e{i} t{i} {s:.6f}\n" for i, s in enumerate(scores)))
    calibration = tmp_path / "cal.json"
    result = run_cli(
        "report", "-q", "--trials", trials, "--calibrate", score_file, "--calibrate-trials", trials, "--no-det",
        "--bootstrap", "0", "--out-dir", tmp_path / "report", "--model", first, "--model", second,
        "--save-calibration", calibration, score_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    a, b = write_wav(tmp_path / "a.wav", 1.0, seed=1), write_wav(tmp_path / "b.wav", 1.2, seed=2)
    accepted = run_cli("verify", "-q", "--model", first, "--model", second, "--calibration", calibration, a, b)
    assert accepted.exit_code == 0 and len(accepted.output.splitlines()[1].split()) == 5, accepted.stderr
    for models in ([first], [second, first]):
        arguments = [option for model in models for option in ("--model", model)]
        refused = run_cli("verify", "-q", *arguments, "--calibration", calibration, a, b)
        assert refused.exit_code == 1 and "calibrated for model" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_members_at_different_rates_are_refused(run_cli, audio: Path, tmp_path: Path) -> None:
    wide, narrow = _model(tmp_path / "m16k.pt", 1), _model(tmp_path / "m8k.pt", 2, sample_rate=8000)
    result = run_cli("extract", "-q", "--model", wide, "--model", narrow, f"scp:{audio}", f"ark:{tmp_path / 'x.ark'}")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "must share a sample rate" in result.stderr and "8000 Hz" in result.stderr
    assert not (tmp_path / "x.ark").exists()
    missing = run_cli("extract", "-q", "--model", wide, "--model", tmp_path / "none.pt", f"scp:{audio}", "ark:-")
    assert missing.exit_code == 1 and "none.pt" in missing.stderr and "no such model file" in missing.stderr
