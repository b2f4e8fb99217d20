"""Front ends as components: built from a `frontend:` section, every Kaldi fbank option against
torchaudio's, model files written before front ends were components, and `spkverif list frontends`."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import builder_options
from spkverif.config import load_train_config, parse_override
from spkverif.frontends import FRONTENDS, KaldiFbank, SincNet, SpeechBrainFbank, build_frontend
from spkverif.models import build_model
from spkverif.models.files import load_model, model_fingerprint, read_checkpoint
from spkverif.models.legacy import upgrade_spec

LEGACY = Path(__file__).parent / "data" / "legacy"
SMALL_TDNN = "model: {name: xvector, channels: 16, stats_channels: 32, embedding_dim: 8}\n"


def _model_from(config_text: str, tmp_path: Path, overrides: list[str] = ()) -> torch.nn.Module:
    (tmp_path / "c.yaml").write_text(config_text)
    config = load_train_config(tmp_path / "c.yaml", [parse_override(text) for text in overrides])
    return build_model(config.model.name, config.model.options, vars(config.frontend), config.data.sample_rate)


@pytest.mark.parametrize(
    ("section", "name", "kind", "check"),
    [
        ("{name: kaldi_fbank, num_mel_bins: 40, frame_shift_ms: 20}", "kaldi_fbank", KaldiFbank, ("window_shift", 160)),
        ("{num_mel_bins: 40, window_type: hanning}", "kaldi_fbank", KaldiFbank, ("num_mel_bins", 40)),
        ("{name: wespeaker_fbank, num_mel_bins: 40, dither: 0.0}", "wespeaker_fbank", KaldiFbank, ("dither", 0.0)),
        ("{name: speechbrain_fbank, num_mel_bins: 40}", "speechbrain_fbank", SpeechBrainFbank, ("num_mel_bins", 40)),
        ("{name: sinc, num_filters: 8, channels: [6, 6], kernel_size: 51}", "sinc", SincNet, ("output_dim", 6)),
    ],
)
def test_each_front_end_builds_from_a_config_section(
    section: str, name: str, kind: type, check: tuple, tmp_path: Path
) -> None:
    model = _model_from(f"data: {{sample_rate: 8000}}\n{SMALL_TDNN}frontend: {section}\n", tmp_path)
    assert isinstance(model.frontend, kind) and getattr(model.frontend, check[0]) == check[1]
    assert model.frontend.sample_rate == 8000 and model.sample_rate == 8000
    assert model.spec["frontend"]["name"] == name
    assert model.encoder.frames[0][0].in_channels == model.frontend.output_dim
    again = build_model(**model.spec)
    assert again.spec == model.spec and list(again.state_dict()) == list(model.state_dict())


def test_empty_front_end_is_the_models_default(tmp_path: Path) -> None:
    assert isinstance(_model_from(SMALL_TDNN, tmp_path).frontend, KaldiFbank)
    sinc = _model_from(SMALL_TDNN.replace("xvector", "sinc_tdnn") + "frontend: {num_filters: 8}\n", tmp_path)
    assert isinstance(sinc.frontend, SincNet) and sinc.spec["frontend"] == {
        "name": "sinc",
        "options": {"num_filters": 8},
    }


@pytest.mark.parametrize(
    ("frontend", "match"),
    [
        (
            {"name": "kaldi_fbank", "options": {"num_mel_bin": 40}},
            "front end 'kaldi_fbank' has no option 'num_mel_bin'",
        ),
        ({"name": "kaldi_fbank", "options": {"window_type": "kaiser"}}, "unknown fbank window 'kaiser'; choose one of"),
        ({"name": "kaldi_fbank", "options": {"preemphasis": 1.5}}, "needs preemphasis >= 0, <= 1"),
        ({"name": "kaldi_fbank", "options": {"high_freq": 9000}}, "low_freq < high_freq <= 8000 Hz"),
        ({"name": "kaldi_fbank", "options": {"num_mel_bins": 3}}, "at least 4 mel bins"),
        ({"name": "kaldi_fbank", "options": {"round_to_power_of_two": False, "frame_length_ms": 25.0625}}, "odd"),
        ({"name": "kaldi_fbank", "options": {"sample_rate": 8000}}, "data.sample_rate"),
        ({"name": "sinc", "options": {"num_filters": 0}}, "needs num_filters >= 1"),
        ({"name": "mfcc"}, "unknown front end 'mfcc'; choose one of: .*kaldi_fbank, .*sinc, speechbrain_fbank"),
    ],
)
def test_front_end_errors_are_one_line(frontend: dict, match: str) -> None:
    with pytest.raises(SpkverifError, match=match) as caught:
        build_model("xvector", {"channels": 16}, frontend)
    assert "\n" not in str(caught.value)


def test_unknown_front_end_option_on_the_command_line_is_one_line(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    result = run_cli(
        "train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--speakers-per-batch", "4",
        "--set", "frontend.num_mel_bin=40", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "spkverif train: error: front end 'kaldi_fbank' has no option 'num_mel_bin'; its options are: "
        + ", ".join(option.name for option in builder_options(KaldiFbank))
    ]
    result = run_cli(
        "train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "f", "--set", "frontend.name=x"
    )
    assert (
        result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1 and "unknown front end" in result.stderr
    )


# every option of torchaudio.compliance.kaldi.fbank that shapes the features -> ours
TORCHAUDIO_NAMES = {
    "frame_length": "frame_length_ms",
    "frame_shift": "frame_shift_ms",
    "preemphasis_coefficient": "preemphasis",
    "subtract_mean": "mean_norm",
    "sample_frequency": "sample_rate",
}
NOT_FEATURES = {"waveform", "channel", "min_duration"}  # input selection, not the features
OPTION_CASES = [
    {},
    {"num_mel_bins": 40},
    {"frame_length": 20.0, "frame_shift": 5.0},
    {"low_freq": 100.0, "high_freq": -400.0},
    {"low_freq": 0.0, "high_freq": 7000.0},
    {"preemphasis_coefficient": 0.0},
    {"preemphasis_coefficient": 0.5},
    {"remove_dc_offset": False},
    {"round_to_power_of_two": False},
    {"snip_edges": False},
    {"snip_edges": False, "frame_length": 10.0, "frame_shift": 10.0},
    {"use_energy": True},
    {"use_energy": True, "raw_energy": False, "htk_compat": True},
    {"use_energy": True, "energy_floor": 1e12},
    {"use_log_fbank": False},
    {"use_power": False},
    {"vtln_warp": 0.9},
    {"vtln_warp": 1.1, "vtln_low": 200.0, "vtln_high": 6000.0},
    {"subtract_mean": True},
    {"sample_frequency": 8000.0, "num_mel_bins": 40},
    *({"window_type": window} for window in ("hamming", "hanning", "rectangular", "blackman")),
    {"window_type": "blackman", "blackman_coeff": 0.36},
]


def test_every_torchaudio_fbank_option_is_reachable() -> None:
    ours = {option.name for option in builder_options(FRONTENDS.get("kaldi_fbank"))} | {"sample_rate"}
    theirs = set(inspect.signature(kaldi.fbank).parameters) - NOT_FEATURES
    assert {TORCHAUDIO_NAMES.get(name, name) for name in theirs} - {"dither"} <= ours
    tested = {key for case in OPTION_CASES for key in case}
    assert theirs - {"dither"} <= tested | {"sample_frequency"}, "every option needs a case below"


@pytest.mark.parametrize(
    "options", OPTION_CASES, ids=lambda case: ",".join(f"{k}={v}" for k, v in case.items()) or "defaults"
)
@pytest.mark.parametrize("num_samples", [400, 12345])
def test_kaldi_fbank_options_match_torchaudio(options: dict, num_samples: int) -> None:
    torch.manual_seed(0)
    waveforms = torch.randn(3, num_samples) * 0.1
    ours_options = {TORCHAUDIO_NAMES.get(key, key): value for key, value in options.items()}
    rate = int(ours_options.pop("sample_rate", 16000))
    ours_options.setdefault("mean_norm", False)
    fbank = build_frontend("kaldi_fbank", {**ours_options, "dither": 0.0}, rate).eval()
    features = fbank(waveforms)
    reference_options = {"num_mel_bins": 80, "energy_floor": 0.0, **options, "dither": 0.0}
    for row in range(3):
        reference = kaldi.fbank(waveforms[row : row + 1] * 32768, **reference_options)
        assert features[row].shape == reference.shape
        assert fbank.num_frames(num_samples) == reference.shape[0] and fbank.output_dim == reference.shape[1]
        ours = features[row]
        if options.get("use_log_fbank") is False:  # energies: the same tolerance on their logarithms
            ours, reference = ours.log(), reference.log()
        torch.testing.assert_close(ours, reference, atol=2e-3, rtol=1e-4)


def test_sine_window_is_the_square_root_of_hanning() -> None:
    sine, hanning = (KaldiFbank(16000, window_type=name).window for name in ("sine", "hanning"))
    torch.testing.assert_close(sine, hanning.sqrt())


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_samples_for_frames_is_the_shortest_input_without_snipped_edges(frames: int) -> None:
    fbank = KaldiFbank(16000, snip_edges=False)
    shortest = fbank.samples_for_frames(frames)
    assert fbank.num_frames(shortest) >= frames and fbank.num_frames(shortest - 1) < frames
    assert fbank.eval()(torch.randn(1, shortest)).shape[1] == fbank.num_frames(shortest)


@pytest.mark.parametrize("path", sorted(LEGACY.glob("*.pt")), ids=lambda path: path.stem)
def test_model_files_from_before_front_ends_were_components_load_bit_for_bit(path: Path) -> None:
    payload = read_checkpoint(path)
    assert "frontend" not in payload["model"]
    model = load_model(path)
    torch.manual_seed(7)
    waveforms = torch.randn(2, model.sample_rate) * 0.1
    with torch.no_grad():
        outputs = model(waveforms)
    # The weights are compared exactly (the fingerprint); the outputs within float32 rounding,
    # since `expected` was computed on another CPU, whose kernels sum in another order (an
    # Intel Xeon with AMX differs from the AMD EPYC that wrote them by up to 9e-8).
    torch.testing.assert_close(outputs, payload["expected"], rtol=1.3e-6, atol=1e-6)
    assert model_fingerprint(model) == payload["fingerprint"]
    # the same seed builds the same initial weights (the old code saved them untrained)
    torch.manual_seed(_seed(path))
    rebuilt = build_model(**upgrade_spec(payload["model"], payload.get("sample_rate")))
    stored = payload.get("state_dict", payload.get("model_state"))
    assert list(rebuilt.state_dict()) == list(stored)
    assert all(torch.equal(rebuilt.state_dict()[key], value) for key, value in stored.items())


def _seed(path: Path) -> int:
    """The seed tests/data/make_legacy_models.py built each network after: its place in that script's MODELS."""
    return ["xvector_8k", "sinc_tdnn", "ecapa_wespeaker", "resnet_speechbrain"].index(path.stem)


def test_legacy_spec_moves_front_end_options_out_of_the_model() -> None:
    spec = read_checkpoint(LEGACY / "sinc_tdnn.pt")["model"]
    assert spec["options"]["sinc_channels"] == [6, 6] and spec["options"]["sample_rate"] == 16000
    upgraded = upgrade_spec(spec)
    assert upgraded["frontend"]["name"] == "sinc" and upgraded["frontend"]["options"]["channels"] == [6, 6]
    assert upgraded["options"] == {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
    assert upgraded["sample_rate"] == 16000 and upgrade_spec(upgraded) is upgraded


def test_old_configs_move_front_end_options_with_a_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "old.yaml").write_text(
        "model: {name: sinc_tdnn, embedding_dim: 8, stride: [5, 1, 1], sinc_channels: [6, 6], sample_rate: 16000}\n"
    )
    with caplog.at_level(logging.WARNING):
        config = load_train_config(tmp_path / "old.yaml", [parse_override("model.waveform_norm=false")])
    assert config.model.options == {"embedding_dim": 8}
    assert config.frontend.name == "" and config.frontend.options == {
        "stride": [5, 1, 1], "channels": [6, 6], "waveform_norm": False,
    }  # fmt: skip
    assert "model.sinc_channels is a front-end option now; write it as frontend.channels" in caplog.text
    assert "model.stride is a front-end option now; write it as frontend.stride" in caplog.text
    named = load_train_config(
        None, [parse_override("model.name=resnet34"), parse_override("model.frontend=wespeaker_fbank")]
    )
    assert named.frontend.name == "wespeaker_fbank" and "frontend" not in named.model.options


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: {sample_rate: 8000}\n", "model.sample_rate 8000 is not data.sample_rate 16000"),
        ("model: {num_mel_bins: 40}\nfrontend: {num_mel_bins: 60}\n", "frontend.num_mel_bins is given twice"),
        ("model: {name: ecapa_tdnn, frontend: wespeaker_fbank}\nfrontend: {name: sinc}\n", "disagree"),
    ],
)
def test_old_configs_that_contradict_the_new_place_are_refused(text: str, match: str, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SpkverifError, match=match):
        load_train_config(tmp_path / "c.yaml")


def test_config_saves_and_reloads_the_front_end(tmp_path: Path) -> None:
    config = load_train_config(
        None, [parse_override("frontend.name=kaldi_fbank"), parse_override("frontend.snip_edges=false")]
    )
    assert config.to_dict()["frontend"] == {"name": "kaldi_fbank", "snip_edges": False}
    config.save(tmp_path / "saved.yaml")
    assert load_train_config(tmp_path / "saved.yaml").to_dict() == config.to_dict()
    assert load_train_config(None).to_dict()["frontend"] == {"name": ""}


def test_list_frontends_shows_every_front_end_and_its_options(run_cli) -> None:
    result = run_cli("list", "frontends")
    assert result.exit_code == 0, result.stderr
    for name in FRONTENDS.names():
        assert name in result.output
    for line in ("frame_shift_ms: float = 10.0  [> 0]", "snip_edges: bool = True", "min_low_hz: float = 50.0"):
        assert line in result.output
    assert "frontends (train --set frontend.name)" in result.output
