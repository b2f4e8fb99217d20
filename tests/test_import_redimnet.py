"""`spkverif import redimnet` and `redimnet2`: IDRnD's ReDimNet and ReDimNet2 checkpoints give IDRnD's
embeddings; bad files are one line.

The references (tests/data/redimnet_*, tests/data/redimnet2_*, tests/data/README.md) were computed
by IDRnD's own code (tests/data/make_redimnet_reference.py, make_redimnet2_reference.py) on small
randomly initialised checkpoints in its release format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from spkverif.io.specifiers import load_vectors
from spkverif.models.files import load_model

DATA = Path(__file__).resolve().parent / "data"
CHECKPOINTS = [
    *(("redimnet", name) for name in ("fwse_convatt", "convnext_att", "resnet_conv", "relu_fc")),
    *(("redimnet2", name) for name in ("maps_gnorm", "dual_fwse_att", "convnext_conv_1d_head")),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs() -> list[np.ndarray]:
    pcm = np.load(DATA / "wespeaker_inputs.npz")
    return [pcm[key] for key in sorted(pcm.files)]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.mark.parametrize(("source", "name"), CHECKPOINTS)
def test_redimnet_checkpoints_give_idrnds_embeddings(run_cli, tmp_path: Path, source: str, name: str) -> None:
    out = tmp_path / "imported.pt"
    result = run_cli("import", "-q", source, DATA / f"{source}_{name}.pt", out)
    assert result.exit_code == 0, result.stderr
    model = load_model(out)
    assert model.spec["name"] == source and model.spec["frontend"]["name"] == f"{source}_mel"
    expected = np.load(DATA / f"{source}_{name}_embeddings.npy")
    got = []
    for pcm in _inputs():
        with torch.no_grad():
            got.append(model(torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None])[0].numpy())
    largest = float(np.abs(_unit(np.stack(got)) - _unit(expected)).max())
    print(f"largest difference from IDRnD's {name}: {largest:.2e}")
    assert largest <= 1e-5


@pytest.mark.parametrize(("source", "name"), [("redimnet", "fwse_convatt"), ("redimnet2", "maps_gnorm")])
def test_extract_with_an_imported_redimnet_gives_idrnds_embeddings(
    run_cli, tmp_path: Path, source: str, name: str
) -> None:
    """Through `spkverif extract` (audio read from WAV files, the CPU runtime's length buckets)."""
    model = tmp_path / "imported.pt"
    assert run_cli("import", "-q", source, DATA / f"{source}_{name}.pt", model).exit_code == 0
    lines = []
    for index, pcm in enumerate(_inputs()):
        soundfile.write(tmp_path / f"u{index}.wav", pcm, 16000, subtype="PCM_16")
        lines.append(f"u{index} {tmp_path / f'u{index}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    embeddings = f"ark,scp:{tmp_path / 'e.ark'},{tmp_path / 'e.scp'}"
    result = run_cli("extract", "-q", "--model", model, f"scp:{tmp_path / 'wav.scp'}", embeddings)
    assert result.exit_code == 0, result.stderr
    keys, got = load_vectors(f"scp:{tmp_path / 'e.scp'}")
    assert keys == ["u0", "u1", "u2"]
    expected = np.load(DATA / f"{source}_{name}_embeddings.npy")
    assert float(np.abs(_unit(got) - _unit(expected)).max()) <= 1e-5


def test_redimnet_bad_checkpoints_are_one_line(run_cli, tmp_path: Path) -> None:
    release = torch.load(DATA / "redimnet_fwse_convatt.pt")
    config, state = release["model_config"], release["state_dict"]
    head = {"head.weight": torch.zeros(2), "head.bias": torch.zeros(2)}
    files = {
        "missing": {"model_config": config, "state_dict": {k: v for k, v in state.items() if "stage2" not in k}},
        "extra": {"model_config": config, "state_dict": {**state, **head}},
        "redimnet2": {"model_config": {**config, "agg_gnorm": True}, "state_dict": state},
        "strides": {"model_config": {**config, "stages_setup": [((1, 1), 2, 4, [(3, 3)], 24)]}, "state_dict": state},
        "pooling": {"model_config": {**config, "pooling_func": "TSTP"}, "state_dict": state},
        "wider": {"model_config": {**config, "C": 8}, "state_dict": state},
    }  # fmt: skip
    for name, payload in files.items():
        torch.save(payload, tmp_path / f"{name}.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for checkpoint, message in (
        (DATA / "wespeaker_resnet34.pt",
         "found a state_dict alone (keys 'conv1.weight', 'bn1.weight', 'bn1.bias' ...), expected IDRnD's ReDimNet"),
        (tmp_path / "missing.pt", "missing keys for 'encoder.stages.2.mix.logits', 'encoder.stages.2.body.1.weight', "
                                  "'encoder.stages.2.body.1.bias' (and "),
        (tmp_path / "extra.pt", "unexpected keys 'head.weight', 'head.bias': not part of the architecture"),
        (tmp_path / "redimnet2.pt", "model_config has 'agg_gnorm', which ReDimNet's (IDRnD/redimnet) has not"),
        (tmp_path / "strides.pt", "model_config stages_setup: [((1, 1), 2, 4, [(3, 3)], 24)] is not ReDimNet's"),
        (tmp_path / "pooling.pt", "model_config pooling_func: 'TSTP' is not supported (only 'ASTP')"),
        (tmp_path / "wider.pt", "has shape"),
        (tmp_path / "junk.pt", "not a readable PyTorch checkpoint"),
    ):  # fmt: skip
        result = run_cli("import", "-q", "redimnet", checkpoint, tmp_path / "out.pt")
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    result = run_cli("import", "-q", "redimnet", DATA / "redimnet_relu_fc.pt", "--config", DATA / "README.md",
                     tmp_path / "o.pt")  # fmt: skip
    assert result.exit_code == 1 and "carries its configuration: leave out --config" in result.stderr


def test_redimnet2_bad_checkpoints_are_one_line(run_cli, tmp_path: Path) -> None:
    release = torch.load(DATA / "redimnet2_dual_fwse_att.pt")
    config, state = release["model_config"], release["state_dict"]
    head = {"head.weight": torch.zeros(2), "head.bias": torch.zeros(2)}
    files = {
        "missing": {"model_config": config, "state_dict": {k: v for k, v in state.items() if "stage1" not in k}},
        "extra": {"model_config": config, "state_dict": {**state, **head}},
        "causal": {"model_config": {**config, "causal": "full"}, "state_dict": state},
        "rope": {"model_config": {**config, "block_1d_type": "v2_conv+att"}, "state_dict": state},
        "pt": {"model_config": {**config, "feat_type": "pt"}, "state_dict": state},
        "subnet": {"model_config": {**config, "is_subnet": True}, "state_dict": state},
        "wider": {"model_config": {**config, "C": 8}, "state_dict": state},
        "kernels": {"model_config": {**config, "stages_setup": [((1, 1), 1, 1, [(5, 5)], 4)]}, "state_dict": state},
    }  # fmt: skip
    for name, payload in files.items():
        torch.save(payload, tmp_path / f"{name}.pt")
    for checkpoint, message in (
        (DATA / "wespeaker_resnet34.pt",
         "found a state_dict alone (keys 'conv1.weight', 'bn1.weight', 'bn1.bias' ...), expected IDRnD's ReDimNet2"),
        (DATA / "redimnet_relu_fc.pt", "stages_setup has one stride a stage: a ReDimNet checkpoint (IDRnD/redimnet), "
                                       "not ReDimNet2's; import it with `spkverif import redimnet`"),
        (tmp_path / "missing.pt", "missing keys for 'encoder.stages.1.mix.logits', 'encoder.stages.1.body.1.weight', "
                                  "'encoder.stages.1.body.1.bias' (and "),
        (tmp_path / "extra.pt", "unexpected keys 'head.weight', 'head.bias': not part of the architecture"),
        (tmp_path / "causal.pt", "model_config causal: 'full' is not supported (only 'none')"),
        (tmp_path / "rope.pt", "model_config block_1d_type: 'v2_conv+att' is not one of"),
        (tmp_path / "pt.pt", "model_config feat_type: 'pt' is not supported (only 'tf')"),
        (tmp_path / "subnet.pt", "model_config has 'is_subnet', which ReDimNet2's (PalabraAI/redimnet2) has not"),
        (tmp_path / "wider.pt", "has shape"),
        (tmp_path / "kernels.pt", "2-D kernels [((5, 5),)] (only [(3, 3)] is built)"),
    ):  # fmt: skip
        result = run_cli("import", "-q", "redimnet2", checkpoint, tmp_path / "out.pt")
        assert result.exit_code == 1 and message in result.stderr, (checkpoint.name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    result = run_cli("import", "-q", "redimnet2", DATA / "redimnet2_maps_gnorm.pt", "--config", DATA / "README.md",
                     tmp_path / "o.pt")  # fmt: skip
    assert result.exit_code == 1 and "carries its configuration: leave out --config" in result.stderr
    result = run_cli("import", "-q", "redimnet", DATA / "redimnet2_maps_gnorm.pt", tmp_path / "o.pt")
    assert result.exit_code == 1 and "(ReDimNet2? `spkverif import redimnet2`)" in result.stderr


def test_sources_without_their_configuration_say_so(run_cli, tmp_path: Path) -> None:
    result = run_cli("import", "-q", "wespeaker", DATA / "wespeaker_resnet34.pt", tmp_path / "out.pt")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "a wespeaker checkpoint needs --config" in result.stderr
    assert not (tmp_path / "out.pt").exists()
