"""Self-supervised front ends (`frontend: wavlm|hubert|wav2vec2`) on tiny randomly initialised transformers
saved to a temporary directory: shapes, what learns in each mode, model files without the directory,
training, extraction and ONNX export, and the one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.base.errors import SpkverifError
from spkverif.io.specifiers import load_vectors
from spkverif.models import build_model
from spkverif.models.files import load_model, model_fingerprint, model_payload, save_atomic

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

SMALL_ECAPA = {
    "channels": 16, "embedding_dim": 8, "attention_bottleneck": 8, "aggregate_channels": 24, "se_bottleneck": 8,
    "scale": 2,
}  # fmt: skip
# two transformer layers of width 32; a CNN of kernels 10 and 8, strides 5 and 4: a frame every 20 samples
TINY = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "conv_dim": (16, 16), "conv_stride": (5, 4), "conv_kernel": (10, 8), "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


def _save_tiny(kind: str, directory: Path) -> Path:
    torch.manual_seed(0)
    if kind == "wavlm":
        network = transformers.WavLMModel(transformers.WavLMConfig(**TINY, num_buckets=16, max_bucket_distance=64))
    else:
        network = transformers.HubertModel(transformers.HubertConfig(**TINY))
    network.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ssl")
    return {kind: _save_tiny(kind, root / kind) for kind in ("wavlm", "hubert")}


def _model(directory: Path, kind: str = "wavlm", **options) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("ecapa_tdnn", SMALL_ECAPA, {"name": kind, "options": {"path": str(directory), **options}})


def _trainable(module: torch.nn.Module) -> set[str]:
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}


@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_frozen_front_end_shapes_and_what_learns(saved: dict[str, Path], kind: str) -> None:
    model = _model(saved[kind], kind).train()
    frontend = model.frontend
    waveforms = 0.1 * torch.randn(2, 4000)
    frames = frontend.num_frames(4000)
    assert frames == (((4000 - 10) // 5 + 1) - 8) // 4 + 1 == 198
    assert frontend.num_frames(frontend.samples_for_frames(frames)) == frames
    assert frontend.num_frames(frontend.samples_for_frames(frames) - 1) == frames - 1
    assert frontend(waveforms).shape == (2, frames, 32) and frontend.output_dim == 32
    embeddings = model(waveforms)
    assert embeddings.shape == (2, 8)
    embeddings.pow(2).sum().backward()
    assert frontend.layer_weights.shape == (1, 3) and frontend.layer_weights.grad.abs().min() > 0
    assert _trainable(frontend) == {"layer_weights"}
    assert all(parameter.grad is None for parameter in frontend.upstream.parameters())
    assert not frontend.upstream.training  # a frozen transformer stays in eval mode (no dropout)
    weights_before = frontend.layer_weights.detach().clone()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.equal(frontend.layer_weights, weights_before)


def test_lora_trains_adapters_on_every_attention_projection(saved: dict[str, Path]) -> None:
    frozen = _model(saved["wavlm"]).eval()
    model = _model(saved["wavlm"], mode="lora", lora_rank=2, lora_alpha=4).eval()
    waveforms = 0.1 * torch.randn(2, 3000)
    with torch.no_grad():  # LoRA starts at zero (B = 0): the same network, through WavLM's rewritten attention
        torch.testing.assert_close(model.frontend(waveforms), frozen.frontend(waveforms), rtol=1e-5, atol=1e-5)
    trainable = _trainable(model.frontend)
    assert trainable - {"layer_weights"} and all("lora_" in name for name in trainable - {"layer_weights"})
    assert _trainable(model.encoder) == {name for name, _ in model.encoder.named_parameters()}
    model.train()
    model(waveforms).pow(2).sum().backward()
    for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
        name = f"upstream.encoder.layers.0.attention.{projection}.lora_B.default.weight"
        assert dict(model.frontend.named_parameters())[name].grad.abs().max() > 0, projection


def test_finetune_trains_the_transformer_but_not_its_cnn(saved: dict[str, Path]) -> None:
    frontend = _model(saved["hubert"], "hubert", mode="finetune").frontend
    trainable = _trainable(frontend)
    assert "upstream.encoder.layers.1.attention.q_proj.weight" in trainable
    assert not any(name.startswith("upstream.feature_extractor.") for name in trainable)
    everything = _model(saved["hubert"], "hubert", mode="finetune", freeze_feature_encoder=False).frontend
    assert _trainable(everything) == {name for name, _ in everything.named_parameters()}


def test_model_file_rebuilds_without_the_directory(saved: dict[str, Path], tmp_path: Path) -> None:
    directory = shutil.copytree(saved["wavlm"], tmp_path / "wavlm")
    model = _model(directory, mode="lora", weighted_sums=2).eval()
    with torch.no_grad():
        model.frontend.layer_weights.uniform_(-1, 1)
    assert model.frontend.output_dim == 64
    options = model.spec["frontend"]["options"]
    assert "path" not in options and options["config"]["model_type"] == "wavlm" and options["mode"] == "lora"
    save_atomic(model_payload(model), tmp_path / "final.pt")
    shutil.rmtree(directory)
    loaded = load_model(tmp_path / "final.pt")
    waveforms = 0.1 * torch.randn(2, 3000)
    with torch.no_grad():
        assert torch.equal(loaded(waveforms), model(waveforms))
    assert model_fingerprint(loaded) == model_fingerprint(model)


def test_a_directory_without_its_files_is_one_line(saved: dict[str, Path], tmp_path: Path) -> None:
    def refused(directory: Path, kind: str = "wavlm", sample_rate: int = 16000) -> str:
        with pytest.raises(SpkverifError) as caught:
            build_model("ecapa_tdnn", SMALL_ECAPA, {"name": kind, "options": {"path": str(directory)}}, sample_rate)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    shutil.copy(saved["wavlm"] / "model.safetensors", weights_only)
    assert (
        refused(weights_only)
        == f"{weights_only}: front-end directory has no config.json (the transformers configuration)"
    )
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(saved["wavlm"] / "config.json", config_only)
    assert refused(config_only) == (
        f"{config_only}: front-end directory has no model.safetensors or pytorch_model.bin (the network's weights)"
    )
    assert "no such front-end directory" in refused(tmp_path / "absent")
    assert "of a hubert model, not wavlm: use frontend: hubert" in refused(saved["hubert"])
    assert "runs at 16000 Hz, not 8000" in refused(saved["wavlm"], sample_rate=8000)
    with pytest.raises(SpkverifError, match="needs path: the local directory of a transformers model"):
        build_model("ecapa_tdnn", SMALL_ECAPA, {"name": "wavlm"})
    options = {"path": str(saved["wavlm"]), "mode": "lora", "lora_targets": "q_proj,query"}
    with pytest.raises(SpkverifError, match=r"frontend wavlm has no module query for LoRA \(frontend.lora_targets\)"):
        build_model("ecapa_tdnn", SMALL_ECAPA, {"name": "wavlm", "options": options})


def test_a_missing_transformers_names_the_extra(saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    with pytest.raises(SpkverifError, match=r"need the transformers package: pip install spkverif\[ssl\]$"):
        _model(saved["wavlm"])


@pytest.mark.slow
def test_transformers_is_imported_only_when_such_a_front_end_is_built() -> None:
    program = "import sys, spkverif.models, spkverif.frontends; print('transformers' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=True)
    assert run.stdout.strip() == "False"


@pytest.mark.slow
def test_train_extract_and_export_onnx(run_cli, saved: dict[str, Path], tiny_corpus: Path, tmp_path: Path) -> None:
    directory = shutil.copytree(saved["wavlm"], tmp_path / "wavlm")
    exp = tmp_path / "exp"
    small = [f"--set=model.{key}={value}" for key, value in SMALL_ECAPA.items()]
    result = run_cli(
        "train", "-q", "--data", tiny_corpus / "train", "--exp", exp, "--model", "ecapa_tdnn", *small,
        "--set", "frontend.name=wavlm", "--set", f"frontend.path={directory}", "--set", "frontend.mode=lora",
        "--set", "training.freeze={frontend.upstream: 1}",  # the transformer's adapters wait one step
        "--epochs", "2", "--batches-per-epoch", "1", "--speakers-per-batch", "4", "--chunk-seconds", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    final = exp / "models" / "final.pt"

    def adapters(path: Path) -> tuple[list[torch.Tensor], torch.Tensor]:
        state = load_model(path).state_dict()
        return [value for key, value in state.items() if "lora_B" in key], state["frontend.layer_weights"]

    lora, layer_weights = adapters(exp / "models" / "epoch_0001.pt")
    assert lora and all(not value.any() for value in lora) and layer_weights.any()  # step 1: adapters frozen
    lora, _ = adapters(final)
    assert any(value.any() for value in lora)  # step 2: the adapters moved off zero

    shutil.rmtree(directory)  # extraction and export need the model file alone
    wav_scp = tmp_path / "wav.scp"  # three utterances of 1 to 1.6 s
    wav_scp.write_text("".join((tiny_corpus / "test" / "wav.scp").read_text().splitlines(keepends=True)[:3]))
    assert run_cli("export", "-q", "--format", "onnx", "--model", final, tmp_path / "m.onnx").exit_code == 0
    arks = {}
    for source, model in (("pytorch", final), ("onnx", tmp_path / "m.onnx")):
        arks[source] = tmp_path / f"{source}.ark"
        result = run_cli("extract", "-q", "--model", model, f"scp:{wav_scp}", f"ark:{arks[source]}")
        assert result.exit_code == 0, result.stderr
    keys, reference = load_vectors(f"ark:{arks['pytorch']}")
    onnx_keys, embeddings = load_vectors(f"ark:{arks['onnx']}")
    assert keys == onnx_keys and len(keys) == 3 and reference.shape[1] == 8

    def normalised(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    assert np.abs(normalised(embeddings) - normalised(reference)).max() <= 1e-4


def test_mhfa_pools_the_two_weighted_sums(saved: dict[str, Path]) -> None:
    torch.manual_seed(1)
    frontend = {"name": "wavlm", "options": {"path": str(saved["wavlm"]), "weighted_sums": 2}}
    model = build_model("mhfa", {"heads": 4, "compression_dim": 8, "embedding_dim": 8}, frontend).train()
    assert model.frontend.output_dim == 64 and model.encoder.input_dim == 32
    embeddings = model(0.1 * torch.randn(2, 3000))
    assert embeddings.shape == (2, 8)
    embeddings.pow(2).sum().backward()
    assert model.frontend.layer_weights.grad.abs().min() > 0  # keys' and values' layer weights both learn
    assert all(parameter.grad is not None for parameter in model.encoder.parameters())

    with pytest.raises(SpkverifError, match=r"mhfa needs .* not KaldiFbank$"):
        build_model("mhfa", {}, {"name": "kaldi_fbank"})
    with pytest.raises(SpkverifError, match=r"not WavLM with weighted_sums: 1$"):
        build_model("mhfa", {}, {"name": "wavlm", "options": {"path": str(saved["wavlm"])}})
