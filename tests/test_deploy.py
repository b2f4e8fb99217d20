"""Deployment: `extract` on ONNX and TorchScript exports, the ONNX path without torch, foreign files refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.io.specifiers import load_vectors
from spkverif.models import build_model
from spkverif.stages.export import export_model
from spkverif.training.checkpoint import model_payload, save_atomic
from tests.conftest import write_wav

TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small trained-looking x-vector as a model file and its ONNX and TorchScript exports."""
    root = tmp_path_factory.mktemp("deploy")
    torch.manual_seed(0)
    model = build_model("xvector", TINY)
    with torch.no_grad():  # BatchNorm statistics away from their initial values, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    files = {"pytorch": root / "final.pt", "onnx": root / "model.onnx", "torchscript": root / "model.ts"}
    save_atomic(model_payload(model), files["pytorch"])
    export_model(files["pytorch"], files["onnx"])
    export_model(files["pytorch"], files["torchscript"])
    return files


@pytest.fixture(scope="module")
def wav_scp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    lines = [
        f"u{i} {write_wav(root / f'u{i}.wav', seconds, seed=i)}\n" for i, seconds in enumerate((0.4, 1.3, 2.0, 5.1))
    ]
    (root / "wav.scp").write_text("".join(lines))
    return root / "wav.scp"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_extract_runs_exported_files_like_the_model(
    run_cli, exported, wav_scp: Path, tmp_path: Path, kind: str
) -> None:
    arks = {}
    for source in ("pytorch", kind):
        arks[source] = tmp_path / f"{source}.ark"
        result = run_cli("extract", "-q", "--model", exported[source], f"scp:{wav_scp}", f"ark:{arks[source]}")
        assert result.exit_code == 0, result.stderr
    keys, reference = load_vectors(f"ark:{arks['pytorch']}")
    other_keys, embeddings = load_vectors(f"ark:{arks[kind]}")
    assert keys == other_keys == ["u0", "u1", "u2", "u3"]
    np.testing.assert_allclose(embeddings, reference, rtol=1e-4, atol=1e-5)


def test_onnx_extraction_imports_neither_torch_nor_training(exported, wav_scp: Path, tmp_path: Path) -> None:
    # with --resample too: audio at 8, 22.05 and 44.1 kHz goes through the one resampler, which needs no torch
    other_rates = tmp_path / "rates.scp"
    other_rates.write_text(
        "".join(
            f"r{rate} {write_wav(tmp_path / f'r{rate}.wav', 1.2, rate, seed=rate)}\n" for rate in (8000, 22050, 44100)
        )
    )
    model = str(exported["onnx"])
    program = (
        "import sys\n"
        "from spkverif.cli import cli\n"
        f"cli(['extract', '-q', '--model', {model!r}, 'scp:{wav_scp}', 'ark:{tmp_path / 'e.ark'}'],"
        " standalone_mode=False)\n"
        f"cli(['extract', '-q', '--resample', '--model', {model!r}, 'scp:{other_rates}', 'ark:{tmp_path / 'r.ark'}'],"
        " standalone_mode=False)\n"
        f"cli(['verify', '-q', '--resample', '--model', {model!r}, '{tmp_path / 'r8000.wav'}',"
        f" '{tmp_path / 'r44100.wav'}', '--out', '{tmp_path / 'verify.txt'}'], standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('spkverif.training'))\n"
        "print('loaded:', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
    assert len(load_vectors(f"ark:{tmp_path / 'e.ark'}")[0]) == 4
    assert load_vectors(f"ark:{tmp_path / 'r.ark'}")[0] == ["r8000", "r22050", "r44100"]
    assert len((tmp_path / "verify.txt").read_text().splitlines()[1].split()) == 3


def test_foreign_onnx_and_bad_files_are_one_line_errors(run_cli, wav_scp: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["waveforms"], ["embeddings"])],
        "foreign",
        [helper.make_tensor_value_info("waveforms", TensorProto.FLOAT, ["B", "T"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", "T"])],
    )
    # IR version 10, opset 18: what onnxruntime 1.31 reads (onnx 1.23 writes IR 14 by default).
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not really a model")
    for path, message in (
        (tmp_path / "foreign.onnx", "no spkverif.json metadata"),
        (tmp_path / "junk.onnx", "not an ONNX model"),
        (tmp_path / "missing.onnx", "no such model file"),
    ):
        result = run_cli("extract", "-q", "--model", path, f"scp:{wav_scp}", f"ark:{tmp_path / 'e.ark'}")
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert not (tmp_path / "e.ark").exists()


@pytest.mark.slow
def test_export_format_by_flag_or_suffix(run_cli, exported, tmp_path: Path) -> None:
    result = run_cli("export", "-q", "--format", "onnx", "--model", exported["pytorch"], tmp_path / "m.bin")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m.bin").read_bytes()[:1] == b"\x08"
    result = run_cli("export", "-q", "--format", "tflite", "--model", exported["pytorch"], tmp_path / "m.x")
    assert result.exit_code == 1 and "unknown export format 'tflite'; choose one of: onnx, torchscript" in result.stderr


def test_verify_with_an_onnx_model_accepts_the_model_files_calibration(run_cli, exported, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.5
    scores = np.where(labels, 0.6, 0.1) + 0.15 * rng.normal(size=200)
    (tmp_path / "trials").write_text(
        "".join(f"e{i} t{i} {'target' if x else 'nontarget'}\n" for i, x in enumerate(labels))
    )
    (tmp_path / "scores").write_text("".join(f"e{i} t{i} {s:.6f}\n" for i, s in enumerate(scores)))
    result = run_cli(
        "report", "-q", "--trials", tmp_path / "trials", "--calibrate", tmp_path / "scores", "--calibrate-trials",
        tmp_path / "trials", "--bootstrap", "0", "--no-det", "--out-dir", tmp_path, "--model", exported["pytorch"],
        "--save-calibration", tmp_path / "cal.json", tmp_path / "scores",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    a, b = write_wav(tmp_path / "a.wav", 1.1, seed=1), write_wav(tmp_path / "b.wav", 2.3, seed=2)
    lines = {}
    for kind in ("pytorch", "onnx", "torchscript"):
        result = run_cli("verify", "-q", "--model", exported[kind], "--calibration", tmp_path / "cal.json", a, b)
        assert result.exit_code == 0, result.stderr
        lines[kind] = result.output.splitlines()[1].split()
    for kind in ("onnx", "torchscript"):
        assert float(lines[kind][2]) == pytest.approx(float(lines["pytorch"][2]), abs=1e-5)
        assert lines[kind][4] == lines["pytorch"][4]
