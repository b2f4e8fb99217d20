"""`spkverif import`: peers' checkpoints become our model files with the same embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.models.files import load_model

SB_HPARAMS = """\
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    se_channels: 8
    res2net_scale: 4
    lin_neurons: 12
"""


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights, and BatchNorm statistics away from 0 and 1, so any misplaced layer shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + values)
                elif name.endswith(("running_mean", "bias")):
                    tensor.copy_(values - 0.5)
                elif name.endswith("norm.weight"):
                    tensor.copy_(0.5 + values)


@pytest.fixture(scope="module")
def speechbrain_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    pytest.importorskip("speechbrain", reason="speechbrain is a test dependency (requirements-test.txt)")
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    root = tmp_path_factory.mktemp("speechbrain")
    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8, res2net_scale=4,
                       lin_neurons=12)  # fmt: skip
    _randomise(model, 1)
    model.eval()
    torch.save(model.state_dict(), root / "embedding_model.ckpt")
    (root / "hyperparams.yaml").write_text(SB_HPARAMS)
    features, normalise = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)

    def embed(waveforms: torch.Tensor) -> torch.Tensor:
        """SpeechBrain's EncoderClassifier.encode_batch, step by step."""
        lengths = torch.ones(waveforms.shape[0])
        with torch.no_grad():
            return model(normalise(features(waveforms), lengths), lengths)[:, 0]

    return {"root": root, "embed": embed, "state": model.state_dict()}


def test_speechbrain_ecapa_gives_speechbrains_embeddings(run_cli, speechbrain_files, tmp_path: Path) -> None:
    root = speechbrain_files["root"]
    out = tmp_path / "imported.pt"
    result = run_cli("import", "-q", "speechbrain", root / "embedding_model.ckpt", "--hparams",
                     root / "hyperparams.yaml", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    model = load_model(out)
    assert model.spec["frontend"]["name"] == "speechbrain_fbank" and model.embedding_dim == 12
    generator = torch.Generator().manual_seed(2)
    largest = 0.0
    for batch, seconds in ((1, 0.5), (2, 1.0), (3, 3.7), (1, 12.0)):
        waveforms = 0.1 * torch.randn(batch, round(seconds * 16000), generator=generator)
        expected = speechbrain_files["embed"](waveforms)
        with torch.no_grad():
            got = model(waveforms)
        largest = max(largest, (got - expected).abs().max().item())
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    print(f"largest difference from SpeechBrain: {largest:.2e}")


def _write_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


def test_speechbrain_mismatches_are_one_line(run_cli, speechbrain_files, tmp_path: Path) -> None:
    root, state = speechbrain_files["root"], speechbrain_files["state"]
    hparams = root / "hyperparams.yaml"
    missing = dict(state)
    del missing["asp.conv.conv.weight"]
    extra = {**state, "classifier.weight": torch.zeros(3)}
    wider = {**state, "fc.conv.weight": torch.zeros(24, 96, 1)}
    (tmp_path / "resnet.yaml").write_text(SB_HPARAMS.replace("kernel_sizes: [5, 3, 3, 3, 1]", "kernel_sizes: [3, 3]"))
    (tmp_path / "tdnn.yaml").write_text(SB_HPARAMS.replace("ECAPA_TDNN.ECAPA_TDNN", "Xvector.Xvector"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    for checkpoint, config, message in (
        (_write_state(tmp_path / "m.ckpt", missing), hparams, "missing key for 'encoder.pooling.attention.4.weight'"),
        (_write_state(tmp_path / "e.ckpt", extra), hparams, "unexpected key 'classifier.weight'"),
        (_write_state(tmp_path / "w.ckpt", wider), hparams, "key 'fc.conv.weight' has shape (24, 96, 1)"),
        (root / "embedding_model.ckpt", tmp_path / "resnet.yaml", "kernel_sizes: [3, 3] does not fit"),
        (root / "embedding_model.ckpt", tmp_path / "tdnn.yaml", "`embedding_model` must be a !new:...ECAPA_TDNN"),
        (tmp_path / "junk.ckpt", hparams, "not a readable PyTorch checkpoint"),
    ):
        result = run_cli("import", "-q", "speechbrain", checkpoint, "--hparams", config, tmp_path / "out.pt")
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    result = run_cli("import", "-q", "kaldi", root / "embedding_model.ckpt", "--config", hparams, tmp_path / "o.pt")
    assert result.exit_code == 1 and "unknown checkpoint source 'kaldi'" in result.stderr


@pytest.mark.slow
def test_imported_speechbrain_model_exports_to_onnx(run_cli, speechbrain_files, tmp_path: Path) -> None:
    from spkverif.runtime import open_model

    root = speechbrain_files["root"]
    run_cli("import", "-q", "speechbrain", root / "embedding_model.ckpt", "--hparams", root / "hyperparams.yaml",
            tmp_path / "sb.pt")  # fmt: skip
    result = run_cli("export", "-q", "--model", tmp_path / "sb.pt", tmp_path / "sb.onnx")
    assert result.exit_code == 0, result.stderr
    runtime = open_model(tmp_path / "sb.onnx")
    waveforms = 0.1 * torch.randn(2, 40000, generator=torch.Generator().manual_seed(3))
    expected = speechbrain_files["embed"](waveforms).numpy()
    got = runtime(waveforms.numpy())
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(got), unit(expected), rtol=0, atol=1e-4)


DATA = Path(__file__).resolve().parent / "data"


def test_wespeaker_mismatches_are_one_line(run_cli, tmp_path: Path) -> None:
    state = torch.load(DATA / "wespeaker_resnet34.pt")
    config = (DATA / "wespeaker_resnet34.yaml").read_text()
    truncated = {key: value for key, value in state.items() if key != "layer3.0.shortcut.1.running_var"}
    torch.save(truncated, tmp_path / "truncated.pt")
    (tmp_path / "resnet18.yaml").write_text(config.replace("ResNet34", "ResNet18"))
    (tmp_path / "ecapa.yaml").write_text(config.replace("ResNet34", "ECAPA_TDNN_c512"))
    (tmp_path / "gemini.yaml").write_text(config.replace("ResNet34", "Gemini_DFResnet114"))
    (tmp_path / "rate.yaml").write_text(config.replace("num_mel_bins: 80", "num_mel_bins: 40"))
    for checkpoint, yaml_file, message in (
        (tmp_path / "truncated.pt", DATA / "wespeaker_resnet34.yaml", "missing key for 'encoder.stages.2.0.shortcut"),
        (DATA / "wespeaker_resnet34.pt", tmp_path / "resnet18.yaml", "holds a WeSpeaker ResNet34 (basic blocks [3, 4"),
        (DATA / "wespeaker_resnet34.pt", tmp_path / "ecapa.yaml", "pooling_func: 'TSTP' is not supported (only ASTP)"),
        (DATA / "wespeaker_resnet34.pt", DATA / "wespeaker_ecapa.yaml", "missing key 'layer1.conv.weight'"),
        (DATA / "wespeaker_ecapa.pt", DATA / "wespeaker_resnet34.yaml", "holds a WeSpeaker ECAPA-TDNN; the config"),
        (DATA / "wespeaker_resnet34.pt", tmp_path / "gemini.yaml", "model: 'Gemini_DFResnet114' is not one we"),
        (DATA / "wespeaker_resnet34.pt", tmp_path / "rate.yaml", "num_mel_bins 40 is not model_args.feat_dim 80"),
    ):
        result = run_cli("import", "-q", "wespeaker", checkpoint, "--config", yaml_file, tmp_path / "out.pt")
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_import_names_the_next_command(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "my model.pt"
    config = DATA / "wespeaker_resnet34.yaml"
    result = run_cli("import", "wespeaker", DATA / "wespeaker_resnet34.pt", "--config", config, out)
    assert result.exit_code == 0, result.stderr
    assert f"next: spkverif verify --model '{out}' ENROLL.wav TEST.wav" in result.stderr
