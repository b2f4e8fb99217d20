"""Every registered network: sizes against layer-by-layer counts and the published figures,
training on batches from 1 s to 20 s, repeatable embeddings, and TorchScript and ONNX exports
that give the same embeddings (ONNX through onnxruntime, within 1e-4 on unit-normalised
embeddings). Behaviour is tested at small widths; sizes at the real ones."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.base.errors import SpkverifError
from spkverif.models import MODELS, build_model, count_parameters
from spkverif.models.files import load_model, model_fingerprint
from spkverif.models.pooling import AttentiveStatisticsPooling, StatisticsPooling, mean_and_std
from spkverif.runtime import open_model
from spkverif.stages.export import export_model, load_exported
from spkverif.training.checkpoint import model_payload, save_atomic

SMALL = {
    "xvector": {"channels": 16, "stats_channels": 32, "embedding_dim": 8},
    "sinc_tdnn": {"channels": 16, "stats_channels": 32, "embedding_dim": 8},
    "ecapa_tdnn": {
        "channels": 16,
        "scale": 4,
        "se_bottleneck": 8,
        "attention_bottleneck": 8,
        "aggregate_channels": 24,
        "embedding_dim": 8,
    },
    "resnet34": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 1, 1, 1]},
    "resnet100": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 1, 1, 1]},
    "resnet221": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 1, 1, 1]},
    "resnet293": {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 1, 1, 1]},
    "campplus": {
        "fcm_channels": 4,
        "tdnn_channels": 16,
        "growth_rate": 4,
        "bottleneck_ratio": 2,
        "block_layers": [2, 2, 2],
        "embedding_dim": 8,
        "segment_frames": 20,
    },
}
SMALL["mhfa"] = {"heads": 2, "compression_dim": 4, "embedding_dim": 8}
# stages with expansion, stride 3 and a 1-D block (conv+att), on 72 mel bins: 144 channels a frame
SMALL["redimnet"] = {"channels": 2, "stages": [[1, 1, 2, 0], [2, 1, 1, 0], [3, 1, 1, 4]],
                     "block_2d": "basic_resnet_fwse", "group_divisor": 1, "embedding_dim": 8}  # fmt: skip
# time strides 1, 2, 2, a fractional expansion, GroupNorms, the 2-D head and a 1-D block (conv+att): 144 channels
SMALL["redimnet2"] = {"channels": 2, "stages": [[1, 1, 1, 2, 4], [2, 2, 1, 0.5, 0], [3, 2, 1, 1, 0]],
                      "out_channels": 4, "embedding_dim": 8}  # fmt: skip
SMALL["eres2net"] = {"base_channels": 4, "blocks": [1, 1, 1, 1], "embedding_dim": 8}
SMALL["eres2netv2"] = {"base_channels": 8, "blocks": [1, 1, 1, 1], "scale": 3, "embedding_dim": 8}
# a tiny random WavLM, rebuilt from its configuration as a model file rebuilds it (a frame every 320 samples)
TINY_WAVLM = {
    "model_type": "wavlm", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "conv_dim": [8, 8], "conv_kernel": [10, 64], "conv_stride": [5, 64], "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2, "num_buckets": 16, "max_bucket_distance": 64,
}  # fmt: skip
SMALL_FRONTEND = {
    "sinc_tdnn": {"name": "sinc", "options": {"num_filters": 8, "channels": [6, 6]}},
    "mhfa": {"name": "wavlm", "options": {"config": TINY_WAVLM, "weighted_sums": 2}},
}


def _conv(inputs: int, outputs: int, kernel: int, bias: bool = True) -> int:
    return inputs * outputs * kernel + (outputs if bias else 0)


def _ecapa_count(channels: int, aggregate: int = 1536, mels: int = 80, embedding: int = 192) -> int:
    """ECAPA-TDNN (Desplanques et al. 2020, Fig. 2), layer by layer; BatchNorm has 2 per channel."""
    width = channels // 8
    block = (
        2 * (_conv(channels, channels, 1) + 2 * channels)
        + 7 * (_conv(width, width, 3) + 2 * width)
        + _conv(channels, 128, 1)
        + _conv(128, channels, 1)
    )
    attention = _conv(3 * aggregate, 128, 1) + _conv(128, aggregate, 1)
    return (
        _conv(mels, channels, 5)
        + 2 * channels
        + 3 * block
        + _conv(3 * channels, aggregate, 1)
        + attention
        + 2 * 2 * aggregate
        + _conv(2 * aggregate, embedding, 1)
    )


def _resnet34_count(base: int = 32, mels: int = 80, embedding: int = 256) -> int:
    """Thin ResNet34: 3x3 convolutions without bias, BatchNorm 2 per channel, 1x1 shortcuts on a shape change."""
    total = _conv(1, base, 9, bias=False) + 2 * base
    inputs = base
    for stage, blocks in enumerate((3, 4, 6, 3)):
        outputs = base * 2**stage
        for _ in range(blocks):
            total += _conv(inputs, outputs, 9, False) + _conv(outputs, outputs, 9, False) + 4 * outputs
            if inputs != outputs:
                total += _conv(inputs, outputs, 1, False) + 2 * outputs
            inputs = outputs
    return total + _conv(2 * inputs * (mels // 8), embedding, 1)


def _sinc_tdnn_count() -> int:
    """pyannote-audio's SincTDNN (paper config) without its unused segment7: weight norm adds one gain per channel."""
    sincnet = 2 * 80 + 2 + 2 * 80 + _conv(80, 60, 5) + 2 * 60 + _conv(60, 60, 5) + 2 * 60
    tdnn = sum(
        _conv(i, o, k) + o for i, o, k in ((60, 512, 5), (512, 512, 3), (512, 512, 3), (512, 512, 1), (512, 1500, 1))
    )
    return sincnet + tdnn + _conv(3000, 512, 1)


@pytest.mark.parametrize(
    ("name", "options", "expected", "published"),
    [
        ("xvector", {}, 4_610_524, 4.61e6),  # WeSpeaker XVEC-TSTP-emb512
        ("sinc_tdnn", {}, _sinc_tdnn_count(), None),
        ("ecapa_tdnn", {}, _ecapa_count(512), 6.19e6),  # WeSpeaker ECAPA_TDNN_GLOB_c512-ASTP-emb192
        ("ecapa_tdnn", {"channels": 1024}, _ecapa_count(1024), 14.65e6),  # WeSpeaker ECAPA_TDNN_GLOB_c1024
        ("resnet34", {}, _resnet34_count(), 6.63e6),  # WeSpeaker ResNet34-TSTP-emb256
    ],
)
def test_sizes_match_layer_counts_and_published_figures(
    name: str, options: dict, expected: int, published: float | None
) -> None:
    count = count_parameters(build_model(name, options))
    assert count == expected
    if published is not None:
        assert abs(count - published) < 0.01e6


def _waveforms(batch: int, seconds: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, round(seconds * 16000), generator=generator)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.usefixtures("one_torch_thread")  # small networks: threads only cost on a busy machine
def test_train_repeat_and_export(name: str, tmp_path: Path) -> None:
    assert sorted(SMALL) == MODELS.names(), "every registered network needs a small configuration here"
    torch.manual_seed(0)
    model = build_model(name, SMALL[name], SMALL_FRONTEND.get(name))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for seconds in (1.0, 20.0, 2.7):
        embeddings = model(_waveforms(2, seconds, 1))
        assert embeddings.shape == (2, 8)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(embeddings, torch.tensor([0, 1])).backward()
        gradients = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in gradients)
        assert any(g.abs().sum() > 0 for g in gradients)
        optimizer.step()

    model.eval()
    batch = torch.cat([_waveforms(1, 3.0, 2), _waveforms(2, 3.0, 3)])
    with torch.no_grad():
        first, second = model(batch), model(batch)
        alone = model(batch[:1])
    assert torch.isfinite(first).all() and torch.equal(first, second)
    torch.testing.assert_close(alone, first[:1], rtol=1e-4, atol=1e-5)

    model_file = tmp_path / "final.pt"
    save_atomic(model_payload(model), model_file)
    exported = tmp_path / "model.ts"
    info = export_model(model_file, exported)
    module, metadata = load_exported(exported)
    assert metadata["model"]["name"] == name and metadata["embedding_dim"] == 8
    assert metadata["min_samples"] == model.min_samples == info["min_samples"]
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for waveforms in (_waveforms(3, 1.0, 4), _waveforms(1, 20.0, 5), _waveforms(2, model.min_samples / 16000, 6)):
            expected = model(waveforms)  # the export's BatchNorms are folded: the same up to rounding
            torch.testing.assert_close(module(waveforms), expected, rtol=0, atol=1e-5 * expected.abs().max().item())

    onnx_file = tmp_path / "model.onnx"
    onnx_info = export_model(model_file, onnx_file)
    assert onnx_info["format"] == "onnx" and onnx_info["max_deviation"] <= 1e-4
    runtime = open_model(onnx_file)
    assert runtime.kind == "onnx" and runtime.metadata == metadata
    for waveforms in (
        _waveforms(1, 0.5, 7),
        _waveforms(3, 1.0, 4),
        _waveforms(2, 7.3, 8),
        _waveforms(2, 20.0, 5),
        _waveforms(1, model.min_samples / 16000, 6),
    ):
        with torch.no_grad():
            expected = torch.nn.functional.normalize(model(waveforms), dim=1).numpy()
        got = runtime(waveforms.numpy())
        got = got / np.linalg.norm(got, axis=1, keepdims=True)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_attentive_pooling_is_weighted_statistics() -> None:
    torch.manual_seed(0)
    frames = torch.randn(2, 6, 40) * 3 + 5
    pooling = AttentiveStatisticsPooling(6, bottleneck=4)
    with torch.no_grad():
        pooling.attention[-1].weight.zero_()
        pooling.attention[-1].bias.zero_()
    torch.testing.assert_close(pooling(frames), StatisticsPooling(6)(frames))

    pooling = AttentiveStatisticsPooling(6, bottleneck=4, global_context=False)
    with torch.no_grad():
        logits = pooling.attention(frames).numpy().astype(np.float64)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    values = frames.numpy().astype(np.float64)
    mean = (weights * values).sum(axis=-1)
    std = np.sqrt((weights * values**2).sum(axis=-1) - mean**2)
    np.testing.assert_allclose(pooling(frames).detach().numpy(), np.concatenate([mean, std], axis=1), rtol=1e-4)


@pytest.mark.parametrize(
    "options", [{}, {"moments": "raw", "eps": 1e-7}, {"bottleneck_norm": True}], ids=["centred", "raw", "norm"]
)
def test_global_context_attention_is_the_concatenation_with_a_third_of_its_products(options: dict) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    batch, channels, bottleneck, frames_count = 3, 12, 5, 40
    pooling = AttentiveStatisticsPooling(channels, bottleneck, **options).eval()  # float32: the pooling computes in it
    frames = (torch.randn(batch, channels, frames_count) * 2 + 1).requires_grad_()

    def concatenated(values: torch.Tensor) -> torch.Tensor:
        # The paper's form: the first convolution over [frames; mean; std] repeated at every frame.
        statistics = pooling._context(values).unsqueeze(-1).expand(-1, -1, frames_count)
        weights = torch.softmax(pooling.attention(torch.cat([values, statistics], dim=1)), dim=-1)
        if pooling.moments == "raw":
            mean = (weights * values).sum(dim=-1)
            std = ((weights * values.pow(2)).sum(dim=-1) - mean.pow(2)).clamp(min=pooling.eps).sqrt()
            return torch.cat([mean, std], dim=-1)
        return mean_and_std(values, weights, pooling.eps)

    got, expected = pooling(frames), concatenated(frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    direction = torch.randn_like(got)
    (grad_got,) = torch.autograd.grad((got * direction).sum(), frames)
    (grad_expected,) = torch.autograd.grad((expected * direction).sum(), frames)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-4, atol=1e-6)

    with FlopCounterMode(display=False) as counter:
        pooling(frames)
    per_frame = 2 * batch * frames_count * (channels * bottleneck + bottleneck * channels)
    per_utterance = 2 * batch * 2 * channels * bottleneck
    assert counter.get_total_flops() == per_frame + per_utterance


def test_user_errors_in_model_options() -> None:
    with pytest.raises(SpkverifError, match="multiple of scale"):
        build_model("ecapa_tdnn", {"channels": 100})
    with pytest.raises(SpkverifError, match="one value per layer"):
        build_model("sinc_tdnn", frontend={"name": "sinc", "options": {"stride": [5, 1]}})
    with pytest.raises(SpkverifError, match="min_low_hz"):
        build_model("sinc_tdnn", frontend={"options": {"min_low_hz": 4000}})


DOCUMENTED = (
    "frontends.sinc",
    "frontends.fbank",
    "frontends.speechbrain_fbank",
    "models.pooling",
    "models.tdnn",
    "models.ecapa",
    "models.resnet",
    "models.campplus",
)


@pytest.mark.parametrize("module", [f"spkverif.{name}" for name in DOCUMENTED])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), extraglobs={"torch": torch})
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    ("name", "padding_mode"), [*((name, "zeros") for name in sorted(SMALL)), ("ecapa_tdnn", "reflect")]
)
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")  # small networks: threads only cost on a busy machine
def test_length_buckets_leave_every_embedding_unchanged(name: str, padding_mode: str) -> None:
    """extract's CPU runtime runs 1-d convolutions on padded length buckets and crops after
    each (spkverif.runtime.buckets): the same embeddings, fewer distinct lengths; a
    network of 2-d convolutions only is left as it is."""
    from spkverif.runtime.buckets import bucket, bucket_convolutions

    options = dict(SMALL[name], padding_mode=padding_mode) if padding_mode != "zeros" else SMALL[name]
    torch.manual_seed(0)
    plain = build_model(name, options, SMALL_FRONTEND.get(name)).eval()
    bucketed = build_model(name, options, SMALL_FRONTEND.get(name)).eval()
    bucketed.load_state_dict(plain.state_dict())
    one_d = [
        layer
        for layer in plain.modules()
        if isinstance(layer, torch.nn.Conv1d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
    ]
    assert bucket_convolutions(bucketed) == len(one_d)
    seen: dict[str, set[tuple[int, int]]] = {"plain": set(), "bucketed": set()}  # (layer, input length)
    for label, network in (("plain", plain), ("bucketed", bucketed)):
        for layer in network.modules():
            if isinstance(layer, torch.nn.Conv1d | torch.nn.Conv2d):
                layer.register_forward_pre_hook(
                    lambda module, inputs, label=label: seen[label].add((id(module), inputs[0].shape[-1]))
                )
    with torch.inference_mode():
        for samples in (16000, 16160, 16321, 23999, 24000, 40000, 40161):
            waveforms = _waveforms(2, samples / 16000, samples)
            torch.testing.assert_close(bucketed(waveforms), plain(waveforms), rtol=1e-5, atol=1e-6)
    if one_d and getattr(plain.encoder, "time_stride", 1) == 1:
        assert len(seen["bucketed"]) < len(seen["plain"])
    elif one_d:  # redimnet2 cuts its frames to a multiple of its time stride: these lengths are as many buckets
        assert len(seen["bucketed"]) <= len(seen["plain"])
    else:
        assert len(seen["bucketed"]) == len(seen["plain"])
    assert [bucket(n) for n in (31, 32, 33, 400, 401, 1000, 1024)] == [31, 32, 34, 400, 416, 1024, 1024]


def test_extract_buckets_on_the_cpu_only_and_training_never(tmp_path: Path) -> None:
    from spkverif.runtime.buckets import _pad

    model = build_model("xvector", SMALL["xvector"])
    save_atomic(model_payload(model), tmp_path / "m.pt")
    hooked = open_model(tmp_path / "m.pt", device="cpu").model
    assert any(_pad in layer._forward_pre_hooks.values() for layer in hooked.modules())
    assert not any(layer._forward_pre_hooks for layer in model.modules())


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_every_network_freezes_for_the_cpu_with_the_same_embeddings(name: str) -> None:
    """A model file run long enough on the CPU is traced and frozen
    (spkverif.runtime.pytorch.freeze_for_cpu): every registered network freezes, and the
    frozen graph gives the eager network's embeddings on batches and lengths it was not
    traced on; the eager network gets its length buckets back only if freezing fails."""
    from spkverif.runtime.buckets import bucket_convolutions
    from spkverif.runtime.pytorch import freeze_for_cpu

    torch.manual_seed(0)
    model = build_model(name, SMALL[name], SMALL_FRONTEND.get(name)).eval()
    bucket_convolutions(model)
    frozen = freeze_for_cpu(model)
    assert frozen is not None
    assert not any(hasattr(layer, "_bucket_hooks") for layer in model.modules())
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        for batch, samples in ((1, 16000), (2, 16321), (4, 40161)):
            waveforms = _waveforms(batch, samples / 16000, samples)
            expected = model(waveforms)
            torch.testing.assert_close(frozen(waveforms), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_a_model_file_runs_frozen_on_the_cpu_after_its_eager_time(tmp_path: Path, monkeypatch) -> None:
    """PytorchEmbedder runs eagerly until its forwards took FREEZE_AFTER_SECONDS, then frozen:
    the same embeddings either way; a network whose tracing fails stays eager, bucketed, once."""
    import spkverif.runtime.pytorch as runtime
    from spkverif.runtime import open_model
    from spkverif.runtime.buckets import _pad

    save_atomic(model_payload(build_model("xvector", SMALL["xvector"])), tmp_path / "m.pt")
    waveforms = [np.asarray(_waveforms(batch, seconds, 7), dtype=np.float32) for batch, seconds in ((2, 1.0), (3, 1.7))]
    eager = open_model(tmp_path / "m.pt", device="cpu")
    eager.eager_seconds = None  # never freezes
    expected = [eager(each) for each in waveforms]
    assert eager.frozen is None

    monkeypatch.setattr(runtime, "FREEZE_AFTER_SECONDS", 0.0)
    embedder = open_model(tmp_path / "m.pt", device="cpu")
    outputs = [embedder(each) for each in waveforms]
    assert embedder.frozen is not None and embedder.eager_seconds is None
    for output, reference in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, reference, rtol=1e-4, atol=1e-5)

    def fails(model):
        raise RuntimeError("the tracer cannot follow this")

    monkeypatch.setattr(runtime, "trace", fails)
    stays = open_model(tmp_path / "m.pt", device="cpu")
    outputs = [stays(each) for each in waveforms]
    assert stays.frozen is None and stays.eager_seconds is None
    assert any(_pad in layer._forward_pre_hooks.values() for layer in stays.model.modules())
    for output, reference in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(output, reference)


def _random_statistics(model: torch.nn.Module, seed: int) -> None:
    """Every BatchNorm given running statistics and affine parameters far from the initial ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and layer.running_mean is not None:
                size = layer.num_features
                layer.running_mean.copy_(torch.randn(size, generator=generator))
                layer.running_var.copy_(0.2 + 2 * torch.rand(size, generator=generator))
                if layer.weight is not None:
                    layer.weight.copy_(0.5 + torch.rand(size, generator=generator))
                    layer.bias.copy_(0.3 * torch.randn(size, generator=generator))


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.usefixtures("one_torch_thread")
def test_a_model_file_opened_for_inference_folds_its_batchnorms_with_the_same_embeddings(
    name: str, tmp_path: Path
) -> None:
    """open_model on the CPU folds each BatchNorm that directly follows a convolution in a
    Sequential (spkverif.runtime.folding) and makes 2-d weights channels-last, and a TorchScript
    export is traced from the network so prepared: the embeddings of every registered network stay
    the built network's (1e-5 of the largest), with BatchNorm statistics far from their initial
    values, on batches and lengths of several sizes."""
    torch.manual_seed(0)
    model = build_model(name, SMALL[name], SMALL_FRONTEND.get(name)).eval()
    _random_statistics(model, 1)
    save_atomic(model_payload(model), tmp_path / "m.pt")
    embedder = open_model(tmp_path / "m.pt", device="cpu")
    embedder.eager_seconds = None  # stays eager
    norm = torch.nn.modules.batchnorm._BatchNorm
    norms = [layer for layer in model.modules() if isinstance(layer, norm)]
    left = [layer for layer in embedder.model.modules() if isinstance(layer, norm)]
    if name.startswith(("resnet", "eres2net", "campplus")):  # conv -> BatchNorm in Sequentials
        assert len(left) < len(norms)
    for parameter in embedder.model.parameters():
        if parameter.dim() == 4:
            assert parameter.is_contiguous(memory_format=torch.channels_last)
    exported_info = export_model(tmp_path / "m.pt", tmp_path / "m.ts")  # traced from the network prepared alike
    module, metadata = load_exported(tmp_path / "m.ts")
    # the fingerprint is the file's, not the folded weights': a calibration made on the model file serves its export
    fingerprint = model_fingerprint(load_model(tmp_path / "m.pt"))
    assert embedder.fingerprint == exported_info["fingerprint"] == metadata["fingerprint"] == fingerprint
    exported = [layer for layer in module.modules() if layer.original_name.startswith("BatchNorm")]
    assert len(exported) == len(left)
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        for batch, samples in ((1, 16000), (3, 25601)):
            waveforms = _waveforms(batch, samples / 16000, samples)
            expected = model(waveforms).numpy()
            scale = np.abs(expected).max()
            np.testing.assert_allclose(embedder(waveforms.numpy()), expected, rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(module(waveforms).numpy(), expected, rtol=0, atol=1e-5 * scale)


def test_fold_batchnorm_folds_only_a_convolution_and_the_batchnorm_that_alone_reads_it() -> None:
    """fold_batchnorm folds Conv -> BatchNorm inside a plain Sequential, exactly as the pair
    computes; it leaves Conv -> ReLU -> BatchNorm, a Sequential with its own forward, a
    weight-normed convolution and a BatchNorm without running statistics; a model in training
    mode is refused."""
    from torch import nn
    from torch.nn.utils import parametrizations

    from spkverif.runtime.folding import fold_batchnorm

    class Shortcut(nn.Sequential):  # the convolution's output also reaches the sum
        def forward(self, x):
            return self[1](self[0](x)) + self[0](x)

    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1).to(memory_format=torch.channels_last), nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 1), nn.ReLU(), nn.BatchNorm2d(4),
        Shortcut(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)),
        parametrizations.weight_norm(nn.Conv2d(4, 4, 1)), nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False),
    ).eval()  # fmt: skip
    _random_statistics(network, 2)
    maps = torch.randn(2, 2, 5, 7)
    with torch.no_grad():
        expected = network(maps)
        assert fold_batchnorm(network) == 2
        torch.testing.assert_close(network(maps), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    kinds = [type(layer).__name__ for layer in network]
    assert kinds[1] == kinds[3] == "Identity"
    assert kinds[7] == kinds[10] == kinds[12] == "BatchNorm2d"
    assert isinstance(network[8][1], nn.BatchNorm2d)
    assert network[0].weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv1d(1, 1, 1), nn.BatchNorm1d(1)))


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.usefixtures("one_torch_thread")
def test_a_model_file_loads_to_the_same_network_without_drawing_initial_weights(name: str, tmp_path: Path) -> None:
    """load_model builds the network with torch.nn.init's initialisers skipped (every weight comes
    from the file): the loaded network gives the saved one's embeddings exactly, the initialisers
    are torch's own again afterwards, and a file that does not fit still fails on one line."""
    from spkverif.models.files import load_model
    from spkverif.training.checkpoint import model_payload, save_atomic

    initialisers = {name: getattr(torch.nn.init, name) for name in ("kaiming_uniform_", "normal_", "zeros_")}
    torch.manual_seed(0)
    model = build_model(name, SMALL[name], SMALL_FRONTEND.get(name)).eval()
    save_atomic(model_payload(model), tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    waveforms = _waveforms(2, 1.3, 5)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(waveforms), model(waveforms), rtol=0, atol=0)
    assert all(getattr(torch.nn.init, key) is function for key, function in initialisers.items())
    payload = model_payload(model)
    del payload["state_dict"][next(key for key in payload["state_dict"] if key.endswith("weight"))]
    save_atomic(payload, tmp_path / "short.pt")
    with pytest.raises(SpkverifError, match="the weights do not fit"):
        load_model(tmp_path / "short.pt")
    assert all(getattr(torch.nn.init, key) is function for key, function in initialisers.items())


# Each 2-d network small, and the option naming its base channels.
SMALL_2D = {
    "resnet34": ({"blocks": [1, 1, 1, 1], "embedding_dim": 8}, "base_channels"),
    "eres2net": ({"blocks": [1, 1, 1, 1], "embedding_dim": 8}, "base_channels"),
    "eres2netv2": ({"blocks": [1, 1, 1, 1], "embedding_dim": 8}, "base_channels"),
    "redimnet": ({"stages": [[1, 1, 2, 4], [2, 1, 1, 0]], "group_divisor": 2, "embedding_dim": 8}, "channels"),
    "redimnet2": ({"stages": [[1, 1, 1, 2, 4], [2, 2, 1, 0.5, 0]], "embedding_dim": 8}, "channels"),
    "campplus": ({"tdnn_channels": 16, "growth_rate": 4, "bottleneck_ratio": 2, "block_layers": [1, 1, 1],
                  "embedding_dim": 8}, "fcm_channels"),  # its 2-d front convolutions
}


@pytest.mark.parametrize("name", sorted(SMALL_2D))
def test_2d_networks_train_channels_last_from_16_base_channels(name: str) -> None:
    """Weights and maps channels-last from 16 base channels (oneDNN's faster layout; training steps here:
    ERes2NetV2 1.28 -> 1.93 samples/s at batch 16, ReDimNet B2 2.59 -> 3.51 at 64, CAM++ 8.73 -> 11.06 at 64),
    contiguous below; the same weights give the same outputs and gradients in either layout."""
    options, width = SMALL_2D[name]
    torch.manual_seed(0)
    model = build_model(name, {**options, width: 16})
    wide = model.encoder.train()
    narrow = build_model(name, {**options, width: 8}).encoder
    kernels = [parameter for parameter in wide.parameters() if parameter.dim() == 4]
    assert kernels and all(kernel.is_contiguous(memory_format=torch.channels_last) for kernel in kernels)
    assert not all(kernel.is_contiguous() for kernel in kernels)  # not merely 1x1 kernels, contiguous both ways
    assert all(parameter.is_contiguous() for parameter in narrow.parameters())
    contiguous = build_model(name, {**options, width: 16}).encoder.train()
    contiguous.load_state_dict(wide.state_dict())
    contiguous.to(memory_format=torch.contiguous_format)
    contiguous.memory_format = torch.contiguous_format
    assert all(parameter.is_contiguous() for parameter in contiguous.parameters())
    features = torch.randn(3, 60, model.frontend.output_dim)
    outputs = [network(features) for network in (wide, contiguous)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    for output in outputs:
        output.square().sum().backward()
    # float32 sums in another order, amplified through the BatchNorms' backward: the whole gradient equal to 1% of
    # its norm (a bias before a BatchNorm has a gradient of zero but for rounding, so no parameter alone)
    left, right = (torch.cat([p.grad.flatten() for p in network.parameters()]) for network in (wide, contiguous))
    assert torch.linalg.norm(left - right) <= 1e-2 * torch.linalg.norm(right)
