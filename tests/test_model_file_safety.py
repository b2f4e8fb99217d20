"""Opening a model file or training checkpoint runs nothing from it (issue #31, item 9).

Every command that opens a spkverif model or checkpoint file (verify, extract, export,
train --init, train --resume, report --filters and --model) and `import` (a peer's
checkpoint) is given a `torch.save` file whose pickle calls `os.system`: each must stop
with one line on stderr and exit 1, and the command must never have run. Files written by
earlier releases (tests/data) and training checkpoints written today still open.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.base.errors import SpkverifError
from spkverif.models import build_model
from spkverif.models.files import SAFE_GLOBALS, load_model, model_payload, read_checkpoint, save_atomic
from spkverif.stages.importers.common import read_state_dict
from tests.conftest import write_wav
from tests.test_cli import TINY_MODEL

DATA = Path(__file__).resolve().parent / "data"
TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
CODE = "it holds pickled code (GLOBAL posix.system), which spkverif never runs"


class Payload:
    """Pickles as a call of `os.system(command)`: what a crafted model file holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_model(path: Path, marker: Path, legacy_format: bool = False) -> Path:
    """A file shaped like a spkverif model file whose `model` entry runs `touch MARKER` when unpickled."""
    payload = model_payload(build_model("xvector", TINY))
    payload["model"] = Payload(f"touch {marker}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy_format)
    return path


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like a training checkpoint whose random-generator state runs `touch MARKER`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_model("xvector", TINY)
    torch.save({"format": "spkverif-train-state", "model": model.spec, "model_state": model.state_dict(),
                "rng": {"python": Payload(f"touch {marker}")}}, path)  # fmt: skip
    return path


def _refused(result, stage: str, path: Path, marker: Path, reason: str = CODE) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"spkverif {stage}: error: {path}: "), lines[0]
    assert reason in lines[0], lines[0]
    assert not marker.exists(), "the file's pickled code ran"


@pytest.fixture
def wavs(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b = write_wav(tmp_path / "a.wav", 1.1, seed=1), write_wav(tmp_path / "b.wav", 1.3, seed=2)
    (tmp_path / "wav.scp").write_text(f"a {a}\nb {b}\n")
    return a, b, tmp_path / "wav.scp"


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy-tar"])
def test_verify_and_extract_run_no_code_from_a_model_file(run_cli, tmp_path: Path, wavs, legacy_format: bool) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_model(tmp_path / "evil.pt", marker, legacy_format)
    a, b, scp = wavs
    _refused(run_cli("verify", "-q", "--model", evil, a, b), "verify", evil, marker)
    _refused(run_cli("extract", "-q", "--model", evil, f"scp:{scp}", f"ark:{tmp_path / 'e.ark'}"), "extract", evil,
             marker)  # fmt: skip
    assert not (tmp_path / "e.ark").exists()


def test_export_runs_no_code_from_a_model_file(run_cli, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_model(tmp_path / "evil.pt", marker)
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"model.{fmt}"
        _refused(run_cli("export", "-q", "--format", fmt, "--model", evil, out), "export", evil, marker)
        assert not out.exists()


def test_report_runs_no_code_from_a_model_file(run_cli, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_model(tmp_path / "evil.pt", marker)
    _refused(run_cli("report", "-q", "--filters", evil), "report", evil, marker)
    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.5
    (tmp_path / "trials").write_text("".join(f"e{i} t{i} {'target' if x else 'nontarget'}\n"
                                             for i, x in enumerate(labels)))  # fmt: skip
    (tmp_path / "scores").write_text("".join(f"e{i} t{i} {0.5 * x + 0.2 * rng.normal():.6f}\n"
                                             for i, x in enumerate(labels)))  # fmt: skip
    result = run_cli(
        "report", "-q", "--trials", tmp_path / "trials", "--calibrate", tmp_path / "scores", "--calibrate-trials",
        tmp_path / "trials", "--bootstrap", "0", "--no-det", "--out-dir", tmp_path / "r", "--model", evil,
        "--save-calibration", tmp_path / "cal.json", tmp_path / "scores",
    )  # fmt: skip
    _refused(result, "report", evil, marker)
    assert not (tmp_path / "cal.json").exists()


def test_train_init_and_resume_run_no_code_from_a_checkpoint(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    for make in (_evil_model, _evil_checkpoint):
        evil = make(tmp_path / "source" / "epoch_0001.pt", marker)
        result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "init", "--init", evil,
                         *TINY_MODEL)  # fmt: skip
        reason = f"training.init: not a spkverif model file or training checkpoint: {CODE}"
        _refused(result, "train", evil, marker, reason)
        assert not (tmp_path / "init" / "models" / "final.pt").exists()
        exp = tmp_path / f"resume_{make.__name__}"
        evil = make(exp / "models" / "epoch_0001.pt", marker)
        result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, "--resume", *TINY_MODEL,
                         "--epochs", "2")  # fmt: skip
        _refused(result, "train", evil, marker)
        assert sorted(path.name for path in (exp / "models").iterdir()) == ["epoch_0001.pt"]


def test_import_runs_no_code_from_a_peer_checkpoint(run_cli, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = tmp_path / "avg_model.pt"
    state = torch.load(DATA / "wespeaker_resnet34.pt", weights_only=True)
    torch.save({**state, "extra": Payload(f"touch {marker}")}, evil)
    result = run_cli("import", "-q", "wespeaker", evil, "--config", DATA / "wespeaker_resnet34.yaml",
                     tmp_path / "out.pt")  # fmt: skip
    _refused(result, "import", evil, marker, f"not a PyTorch checkpoint of weights: {CODE}")
    assert not (tmp_path / "out.pt").exists()


def test_a_plain_pickle_and_junk_are_one_line_errors(run_cli, tmp_path: Path, wavs) -> None:
    """A pickle not written by torch.save runs nothing either: torch's weights-only unpickler reads
    protocol 2 (and meets the GLOBAL) but not the framed protocols 4 and 5."""
    marker = tmp_path / "MARKER"
    a, b, _ = wavs
    for protocol, reason in ((2, CODE), (pickle.HIGHEST_PROTOCOL, "not a readable checkpoint: Unsupported operand")):
        plain = tmp_path / f"plain{protocol}.pt"
        plain.write_bytes(pickle.dumps({"format": "spkverif-model", "model": Payload(f"touch {marker}")}, protocol))
        _refused(run_cli("verify", "-q", "--model", plain, a, b), "verify", plain, marker, reason)
    (tmp_path / "empty.pt").write_bytes(b"")
    result = run_cli("verify", "-q", "--model", tmp_path / "empty.pt", a, b)
    _refused(result, "verify", tmp_path / "empty.pt", marker, "not a readable checkpoint: Ran out of input")


def test_every_file_of_earlier_releases_still_opens() -> None:
    """tests/data: model files and a training checkpoint written before front ends were components,
    and the WeSpeaker checkpoints `import` reads."""
    legacy = sorted((DATA / "legacy").glob("*.pt"))
    assert len(legacy) == 4
    for path in legacy:
        payload = read_checkpoint(path)
        model = load_model(path)
        with torch.no_grad():
            torch.manual_seed(7)
            waveforms = torch.randn(2, model.sample_rate) * 0.1
            torch.testing.assert_close(model(waveforms), payload["expected"], rtol=1e-5, atol=1e-6)
    for name in ("wespeaker_resnet34.pt", "wespeaker_ecapa.pt"):
        assert read_state_dict(DATA / name, nested=("state_dict",))


def test_a_training_checkpoint_holds_only_what_opens_safely(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    """Today's training checkpoint, random-generator states included, opens with weights_only=True
    and SAFE_GLOBALS (NumPy's generator state is an ndarray), and the allowance does not outlive the load."""
    exp = tmp_path / "exp"
    assert run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, *TINY_MODEL).exit_code == 0
    checkpoint = exp / "models" / "epoch_0001.pt"
    before = set(torch.serialization.get_safe_globals())
    payload = read_checkpoint(checkpoint)
    assert set(torch.serialization.get_safe_globals()) == before and np.ndarray not in before
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file, for the comparison
    assert payload["rng"]["python"] == full["rng"]["python"]
    name, key, position, gauss, cached = payload["rng"]["numpy"]
    assert isinstance(key, np.ndarray) and key.dtype == np.uint32
    assert (name, position, gauss, cached) == tuple(full["rng"]["numpy"][i] for i in (0, 2, 3, 4))
    np.testing.assert_array_equal(key, full["rng"]["numpy"][1])
    assert torch.equal(payload["rng"]["torch"], full["rng"]["torch"])
    with pytest.raises(Exception, match="Unsupported global"):  # without our allowance torch refuses it
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert len(SAFE_GLOBALS) == 5


def test_a_model_file_that_contradicts_itself_is_one_line(tmp_path: Path) -> None:
    """Item 8 for PyTorch files: the entries must describe the weights the file holds."""
    torch.manual_seed(0)
    model = build_model("xvector", TINY)
    cases = {
        "dim.pt": ({"embedding_dim": 512}, "the file says embedding_dim 512, but the network it holds has 8"),
        "rate.pt": ({"sample_rate": 8000}, "the file says sample_rate 8000, but the network it holds has 16000"),
        "weights.pt": (
            {"model": {**model.spec, "options": {**TINY, "embedding_dim": 16}}},
            "the weights do not fit the network the file describes (xvector): size mismatch for",
        ),
        "spec.pt": ({"model": "xvector"}, "the file's `model` entry is not a network's name and options"),
    }
    for name, (change, message) in cases.items():
        save_atomic({**model_payload(model), **change}, tmp_path / name)
        with pytest.raises(SpkverifError, match="^" + str(tmp_path / name)) as caught:
            load_model(tmp_path / name)
        assert message in str(caught.value) and "\n" not in str(caught.value)
