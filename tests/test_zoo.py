"""The 2026 model zoo (issue #34): ResNet100/221/293, CAM++, ReDimNet, ERes2Net and ERes2NetV2.

Sizes against layer-by-layer counts and the published figures (built on the meta device,
so the deep ResNets cost no memory); one training step with a classification loss (aam)
and a pair loss (triplet); TorchScript and ONNX exports giving the same unit-length
embeddings within 1e-4; length buckets leaving embeddings unchanged; `spkverif list models`
showing each network with its parameters and multiply-adds. Behaviour at tiny widths."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.frontends import build_frontend
from spkverif.losses import build_loss
from spkverif.models import MODELS, build_model, count_parameters
from spkverif.models.campplus import segment_means
from spkverif.models.cost import model_cost
from spkverif.runtime import open_model
from spkverif.stages.export import export_model, load_exported
from spkverif.training.checkpoint import model_payload, save_atomic

ZOO = ("resnet100", "resnet221", "resnet293", "campplus", "redimnet", "redimnet2", "eres2net", "eres2netv2")
TINY = {
    "resnet100": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 2, 1, 1]},
    "resnet221": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 2, 1, 1]},
    "resnet293": {"base_channels": 4, "embedding_dim": 8, "blocks": [2, 1, 1, 1]},
    "campplus": {
        "fcm_channels": 4,
        "tdnn_channels": 16,
        "growth_rate": 4,
        "bottleneck_ratio": 2,
        "block_layers": [2, 3, 2],
        "embedding_dim": 8,
        "segment_frames": 20,  # several segments, the last one partial, at every length below
    },
    "redimnet": {  # stages with expansion, stride 3, a 1-D block (one: ONNX export's time); 144 channels a frame
        "channels": 2,
        "stages": [[1, 1, 2, 0], [2, 1, 1, 0], [3, 1, 1, 4]],
        "block_2d": "basic_resnet_fwse",
        "group_divisor": 1,
        "embedding_dim": 8,
    },
    "redimnet2": {  # time strides 1, 2, 2, a fractional expansion, dual outputs, the 2-D head; 144 channels a frame
        "channels": 2,
        "stages": [[1, 1, 1, 2, 4], [2, 2, 1, 0.5, 0], [3, 2, 1, 1, 0]],
        "out_channels": 4,
        "dual_outputs": True,
        "embedding_dim": 8,
    },
    "eres2net": {"base_channels": 4, "blocks": [1, 2, 1, 1], "embedding_dim": 8},  # groups of 2 and 4 channels
    "eres2netv2": {"base_channels": 8, "blocks": [1, 1, 2, 1], "scale": 3, "embedding_dim": 8},  # 3 and 13
}


# tiny networks on one torch thread (conftest.py): threads only cost on a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv(inputs: int, outputs: int, kernel: int, bias: bool = False) -> int:
    return inputs * outputs * kernel + (outputs if bias else 0)


def _resnet_count(
    blocks: tuple[int, ...], bottleneck: bool, base: int = 32, mels: int = 80, embedding: int = 256
) -> int:
    """WeSpeaker's ResNet: 3x3 stem, basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4) blocks without
    bias, BatchNorm 2 a channel, 1x1 shortcut on a shape change, linear layer on mean+std."""
    total = _conv(1, base, 9) + 2 * base
    inputs = base
    for stage, count in enumerate(blocks):
        width = base * 2**stage
        outputs = 4 * width if bottleneck else width
        for _ in range(count):
            if bottleneck:
                total += _conv(inputs, width, 1) + _conv(width, width, 9) + _conv(width, outputs, 1)
                total += 4 * width + 2 * outputs
            else:
                total += _conv(inputs, width, 9) + _conv(width, width, 9) + 4 * width
            if inputs != outputs:
                total += _conv(inputs, outputs, 1) + 2 * outputs
            inputs = outputs
    return total + _conv(2 * inputs * (mels // 8), embedding, 1, bias=True)


def _campplus_count(embedding: int = 192) -> int:
    """CAM++ (Wang et al. 2023, 3D-Speaker's layout), layer by layer."""
    fcm = _conv(1, 32, 9) + 2 * 32  # stem
    fcm += 4 * (2 * _conv(32, 32, 9) + 4 * 32) + 2 * (_conv(32, 32, 1) + 2 * 32)  # 4 blocks, 2 strided shortcuts
    fcm += _conv(32, 32, 9) + 2 * 32
    total = fcm + _conv(320, 128, 5) + 2 * 128
    channels = 128
    for layers in (12, 24, 16):
        for index in range(layers):
            inputs = channels + 32 * index
            total += 2 * inputs + _conv(inputs, 128, 1) + 2 * 128  # BN, 1x1 bottleneck, BN
            total += _conv(128, 32, 3) + _conv(128, 64, 1, True) + _conv(64, 32, 1, True)  # CAM: local, mask
        channels += 32 * layers
        total += 2 * channels + _conv(channels, channels // 2, 1)  # transit
        channels //= 2
    return total + 2 * channels + _conv(2 * channels, embedding, 1)  # BN, embedding (BatchNorm without affine)


def _aff_count(channels: int) -> int:
    """ERes2Net's attentional feature fusion: 1x1 convolutions (with bias) 2C -> C/4 -> C, each with BatchNorm."""
    inner = channels // 4
    return _conv(2 * channels, inner, 1, True) + 2 * inner + _conv(inner, channels, 1, True) + 2 * channels


def _eres2net_count(base: int = 32, width: int = 32, scale: int = 2, expansion: int = 2, fusions: int = 3,
                    blocks: tuple[int, ...] = (3, 4, 6, 3), embedding: int = 192) -> int:  # fmt: skip
    """ERes2Net (`fusions` 3) or ERes2NetV2 (1) as 3D-Speaker builds them, layer by layer."""
    total = _conv(1, base, 9) + 2 * base
    inputs, outputs = base, []
    for stage, count in enumerate(blocks):
        planes = base * 2**stage
        group, out = planes * width // 64, expansion * planes
        for index in range(count):
            total += _conv(inputs, group * scale, 1) + 2 * group * scale + scale * (_conv(group, group, 9) + 2 * group)
            total += (scale - 1) * _aff_count(group) if stage >= 2 else 0  # local fusion in stages 3 and 4
            total += _conv(group * scale, out, 1) + 2 * out
            if index == 0 and (stage > 0 or inputs != out):
                total += _conv(inputs, out, 1) + 2 * out
            inputs = out
        outputs.append(out)
    for stage in range(3 - fusions, 3):  # global fusion: a strided 3x3 down to the next stage, AFF
        total += _conv(outputs[stage], outputs[stage + 1], 9) + _aff_count(outputs[stage + 1])
    return total + _conv(2 * outputs[-1] * 10, embedding, 1, True)


def _meta_count(name: str, options: dict | None = None) -> int:
    frontend = build_frontend("kaldi_fbank", {}, 16000)
    with torch.device("meta"):
        return count_parameters(MODELS.build(name, frontend, **(options or {})))


@pytest.mark.parametrize(
    ("name", "options", "expected", "published"),
    [
        ("resnet100", {}, _resnet_count((6, 16, 24, 3), False), None),  # WeSpeaker's is SimAM at width 64
        ("resnet221", {}, _resnet_count((6, 16, 48, 3), True), 23.79e6),  # WeSpeaker ResNet221-TSTP-emb256
        ("resnet293", {}, _resnet_count((10, 20, 64, 3), True), 28.62e6),  # WeSpeaker ResNet293-TSTP-emb256
        ("campplus", {}, _campplus_count(), None),
        ("campplus", {"embedding_dim": 512}, _campplus_count(512), 7.18e6),  # the paper, 3D-Speaker VoxCeleb
        ("eres2net", {}, _eres2net_count(), 6.61e6),  # 3D-Speaker's ERes2Net-base (VoxCeleb)
        ("eres2net", {"base_channels": 64}, _eres2net_count(64), 22.46e6),  # ERes2Net-large (published 22.4M)
        ("eres2net", {"base_channels": 64, "base_width": 24, "scale": 3, "expansion": 4},
         _eres2net_count(64, 24, 3, 4), None),  # 3D-Speaker's ERes2Net_huge
        ("eres2netv2", {}, _eres2net_count(64, 26, 2, 2, 1), 17.86e6),  # 3D-Speaker's ERes2NetV2
    ],
)
def test_sizes_match_layer_counts_and_published_figures(
    name: str, options: dict, expected: int, published: float | None
) -> None:
    count = _meta_count(name, options)
    assert count == expected
    if published is not None:
        assert abs(count - published) < 0.01e6
    if not options:
        assert model_cost(name).parameters == count


def test_the_cost_counts_what_a_built_model_has_and_its_multiply_adds() -> None:
    assert model_cost("resnet34").parameters == count_parameters(build_model("resnet34"))
    names = ("resnet34", "campplus", "resnet221", "resnet293", "eres2net", "eres2netv2")
    macs = {name: model_cost(name).multiply_adds for name in names}
    assert 4.4e9 < macs["resnet34"] < 4.7e9  # WeSpeaker's table: 4.55G for 200 frames
    assert 1.0e9 < macs["campplus"] < 1.3e9
    assert macs["resnet34"] < macs["resnet221"] < macs["resnet293"] < 29e9
    assert 8.0e9 < macs["eres2netv2"] < 8.6e9  # 3D-Speaker's ERes2NetV2.py: 12.69G on 300 frames (thop), 8.46G on 200
    assert macs["campplus"] < macs["eres2net"] < macs["eres2netv2"]


def _waveforms(batch: int, seconds: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, round(seconds * 16000), generator=generator)


@pytest.mark.parametrize("loss", ["aam", "triplet"])
@pytest.mark.parametrize("name", ZOO)
def test_one_training_step_with_a_margin_and_a_pair_loss(name: str, loss: str) -> None:
    assert set(ZOO) <= set(MODELS.names())
    torch.manual_seed(0)
    model = build_model(name, TINY[name]).train()
    head = build_loss(loss, 8, 4)
    parameters = [*model.parameters(), *head.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.05)
    labels = torch.arange(4).repeat_interleave(2)  # 4 speakers x 2 chunks: what triplet mining needs
    embeddings = model(_waveforms(8, 1.3, 0))
    assert embeddings.shape == (8, 8)
    output = head(embeddings, labels)
    assert torch.isfinite(output.loss) and output.loss > 0
    optimizer.zero_grad()
    output.loss.backward()
    gradients = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert sum(bool(g.abs().sum() > 0) for g in gradients) > 0.9 * len(gradients)
    optimizer.step()
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet221", "campplus", "eres2net", "eres2netv2"])  # redimnet: test_models.py
def test_torchscript_and_onnx_exports_give_the_same_embeddings(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY[name]).train()
    with torch.no_grad():  # move BatchNorm's statistics and the weights off their initial values
        for seed in range(2):
            model(_waveforms(4, 1.5, seed))
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.eval()
    model_file = tmp_path / "final.pt"
    save_atomic(model_payload(model), model_file)

    export_model(model_file, tmp_path / "model.ts")
    module, metadata = load_exported(tmp_path / "model.ts")
    assert metadata["model"]["name"] == name and metadata["embedding_dim"] == 8
    lengths = (model.min_samples / 16000, 0.5, 1.0, 3.1, 20.0)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for index, seconds in enumerate(lengths):
            waveforms = _waveforms(2, seconds, 10 + index)
            torch.testing.assert_close(module(waveforms), model(waveforms), rtol=0, atol=1e-5)

    info = export_model(model_file, tmp_path / "model.onnx")
    assert info["format"] == "onnx" and info["max_deviation"] <= 1e-4
    runtime = open_model(tmp_path / "model.onnx")
    for index, seconds in enumerate((*lengths, 7.3)):
        waveforms = _waveforms(2, seconds, 20 + index)
        with torch.no_grad():
            expected = torch.nn.functional.normalize(model(waveforms), dim=1).numpy()
        got = runtime(waveforms.numpy())
        got = got / np.linalg.norm(got, axis=1, keepdims=True)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet221", "eres2net", "eres2netv2"])
def test_networks_of_2d_convolutions_are_left_off_the_length_buckets(name: str) -> None:
    """2-d convolutions ran slower bucketed than plain (spkverif.runtime.buckets)."""
    from spkverif.runtime.buckets import bucket_convolutions

    assert bucket_convolutions(build_model(name, TINY[name]).eval()) == 0


@pytest.mark.parametrize("name", ["campplus", "redimnet", "redimnet2"])
def test_length_buckets_leave_every_embedding_unchanged(name: str) -> None:
    """extract's CPU runtime pads each 1-d convolution's input to a length bucket and crops after
    it (spkverif.runtime.buckets); CAM++'s segment and utterance means must see only real frames."""
    from spkverif.runtime.buckets import bucket_convolutions

    torch.manual_seed(0)
    plain = build_model(name, TINY[name]).eval()
    bucketed = build_model(name, TINY[name]).eval()
    bucketed.load_state_dict(plain.state_dict())
    assert bucket_convolutions(bucketed) > 0
    with torch.inference_mode():
        for samples in (16000, 16321, 23999, 40161):
            waveforms = _waveforms(2, samples / 16000, samples)
            torch.testing.assert_close(bucketed(waveforms), plain(waveforms), rtol=1e-5, atol=1e-6)


def test_segment_means_against_a_loop() -> None:
    frames = torch.randn(2, 3, 47)
    means = segment_means(frames, 10)
    for start in range(0, 47, 10):
        expected = frames[..., start : start + 10].mean(dim=-1, keepdim=True).expand(-1, -1, min(10, 47 - start))
        torch.testing.assert_close(means[..., start : start + 10], expected)


def test_a_campplus_embedding_does_not_depend_on_the_rest_of_the_batch() -> None:
    torch.manual_seed(0)
    model = build_model("campplus", TINY["campplus"]).eval()
    batch = _waveforms(3, 2.3, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(batch[:1]), model(batch)[:1], rtol=1e-4, atol=1e-5)


def test_user_errors_in_zoo_options() -> None:
    from spkverif.base.errors import SpkverifError

    with pytest.raises(SpkverifError, match="4 counts"):
        build_model("resnet221", {"blocks": [1, 1, 1]})
    with pytest.raises(SpkverifError, match="one value per block"):
        build_model("campplus", {"block_layers": [2, 2], "dilations": [1, 2, 2]})
    with pytest.raises(SpkverifError, match="segment_frames"):
        build_model("campplus", {"segment_frames": 0})


def test_list_models_shows_the_zoo_with_sizes_and_multiply_adds(run_cli) -> None:
    result = run_cli("list", "models")
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "mult-adds / 2 s" in result.output
    sizes = {"resnet100": "12.90M", "resnet221": "23.79M", "resnet293": "28.63M", "campplus": "6.85M"}
    sizes["redimnet"] = "4.89M"  # B2
    sizes["redimnet2"] = "4.20M"  # B3
    sizes |= {"eres2net": "6.61M", "eres2netv2": "17.86M"}
    for name, size in sizes.items():
        assert any(line.startswith(f"│ {name} ") and f" {size} │" in line for line in result.output.splitlines()), name


@pytest.mark.parametrize(
    "module", ["spkverif.models.resnet", "spkverif.models.campplus", "spkverif.models.redimnet",
               "spkverif.frontends.redimnet_mel", "spkverif.models.redimnet2", "spkverif.frontends.redimnet2_mel",
               "spkverif.models.eres2net"]
)  # fmt: skip
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), extraglobs={"torch": torch})
    assert result.failed == 0 and result.attempted > 0
