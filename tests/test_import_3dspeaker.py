"""`spkverif import 3dspeaker` (CAM++, ERes2Net, ERes2NetV2) and WeSpeaker's CAM++ (issue #34).

Each reference was made by the peer's own code (tests/data/make_3dspeaker_reference.py, run once
with checkouts of 3D-Speaker and WeSpeaker; tests/data/README.md): the peer's network at a narrow
width, its recipe configuration, weights made from a seed (tests/seeded_weights.py: no weights are
stored, the test makes the same checkpoint bit for bit and checks its digest), and the embeddings
the peer's inference gives for three fixed inputs. Our import, then `extract`, must give the same
unit-length embeddings within 1e-5. Then 3D-Speaker's front end against torchaudio's Kaldi fbank,
and the one-line errors for a checkpoint of another network or toolkit, missing or extra keys,
and configurations we do not build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml

from spkverif.frontends import build_frontend
from spkverif.io.specifiers import load_vectors
from spkverif.models.files import load_model
from tests.seeded_weights import digest, seeded_features, seeded_state

DATA = Path(__file__).resolve().parent / "data"
NETWORKS = {  # reference name -> our model and options the import must choose
    "3dspeaker_campplus": ("campplus", {"fcm_channels": 4, "tdnn_channels": 16, "growth_rate": 4,
                                        "bottleneck_ratio": 2, "embedding_dim": 16, "pooling_eps": 0.0}),
    "3dspeaker_eres2net": ("eres2net", {"base_channels": 4, "blocks": [2, 1, 2, 1], "base_width": 32, "scale": 2}),
    "3dspeaker_eres2net_huge": ("eres2net", {"base_channels": 4, "base_width": 24, "scale": 3, "expansion": 4}),
    "3dspeaker_eres2netv2": ("eres2netv2", {"base_channels": 8, "base_width": 26, "scale": 3, "expansion": 2}),
}  # fmt: skip


# tiny networks on one torch thread (conftest.py): threads only cost on a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(name: str) -> dict:
    with np.load(DATA / f"{name}_reference.npz") as stored:
        return {key: stored[key] for key in stored.files}


def _checkpoint(name: str, folder: Path, hot: bool = False) -> Path:
    """The peer's checkpoint, made again from its keys, shapes and seed, and written as the peer writes it;
    `hot`: with the weights of the reference's `hot_*` embeddings."""
    reference = _reference(name)
    keys, dtypes = [str(key) for key in reference["keys"]], [str(d) for d in reference["dtypes"]]
    gain = int(reference["hot_gain"]) if hot else 1
    state = seeded_state(keys, json.loads(str(reference["shapes"])), dtypes, int(reference["seed"]), gain)
    wanted = reference["hot_digest" if hot else "digest"]
    assert digest(state) == str(wanted), "the seeded checkpoint is not the one the peer embedded"
    path = folder / f"{name}{'-hot' * hot}.ckpt"
    torch.save(state, path)
    return path


def _inputs() -> list[np.ndarray]:
    with np.load(DATA / "wespeaker_inputs.npz") as stored:
        return [stored[f"arr_{index}"] for index in range(len(stored.files))]


def _parity(model: torch.nn.Module, name: str) -> float:
    """Largest difference between our unit-length embeddings of the reference inputs and the peer's."""
    expected = _reference(name)["embeddings"]
    largest = 0.0
    for pcm, wanted in zip(_inputs(), expected, strict=True):
        with torch.no_grad():
            got = model(torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None])[0].numpy()
        largest = max(largest, float(np.abs(_unit(got) - _unit(wanted)).max()))
    return largest


@pytest.mark.parametrize("name", list(NETWORKS))
def test_3dspeaker_checkpoints_give_3dspeakers_embeddings(run_cli, tmp_path: Path, name: str) -> None:
    out = tmp_path / "imported.pt"
    checkpoint = _checkpoint(name, tmp_path)
    result = run_cli("import", "-q", "3dspeaker", checkpoint, "--config", DATA / f"{name}.yaml", out)
    assert result.exit_code == 0, result.stderr
    model = load_model(out)
    ours, options = NETWORKS[name]
    assert model.spec["name"] == ours and options.items() <= model.spec["options"].items()
    assert model.spec["frontend"] == {"name": "3dspeaker_fbank", "options": {"num_mel_bins": 80}}
    largest = _parity(model, name)
    assert largest <= 1e-5
    print(f"largest difference from 3D-Speaker's {name}: {largest:.2e}")


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_encoders_match_where_activations_are_large_and_clipped(run_cli, tmp_path: Path, name: str) -> None:
    """The encoder alone on seeded features, weights twice as wide: ERes2Net's ReLU clipped at 20 acts on
    5-9% of its activations (as the reference records). Without the front end's float32 rounding, whose
    effect such weights amplify, the embeddings agree as closely as the peer's own float32 and float64."""
    reference = _reference(name)
    if "eres2net" in name:
        assert float(reference["hot_clipped"]) > 0.01
    out = tmp_path / "hot.pt"
    checkpoint = _checkpoint(name, tmp_path, hot=True)
    assert run_cli("import", "-q", "3dspeaker", checkpoint, "--config", DATA / f"{name}.yaml", out).exit_code == 0
    features = seeded_features(int(reference["seed"]), [int(size) for size in reference["hot_features"]])
    with torch.no_grad():
        got = load_model(out).encoder(features).numpy()
    np.testing.assert_allclose(_unit(got), _unit(reference["hot_embeddings"]), rtol=0, atol=1e-5)


def test_imported_3dspeaker_model_extracts_3dspeakers_embeddings(run_cli, tmp_path: Path) -> None:
    """The whole path a user takes: import, then `extract` on wav files (its length buckets included)."""
    name = "3dspeaker_eres2netv2"
    run_cli("import", "-q", "3dspeaker", _checkpoint(name, tmp_path), "--config", DATA / f"{name}.yaml",
            tmp_path / "model.pt")  # fmt: skip
    lines = []
    for index, pcm in enumerate(_inputs()):
        soundfile.write(tmp_path / f"u{index}.wav", pcm, 16000, subtype="PCM_16")
        lines.append(f"u{index} {tmp_path / f'u{index}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    result = run_cli("extract", "-q", "--model", tmp_path / "model.pt", f"scp:{tmp_path / 'wav.scp'}",
                     f"ark:{tmp_path / 'e.ark'}")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    keys, matrix = load_vectors(f"ark:{tmp_path / 'e.ark'}")
    assert keys == ["u0", "u1", "u2"]
    np.testing.assert_allclose(_unit(matrix), _unit(_reference(name)["embeddings"]), rtol=0, atol=1e-5)


def test_wespeaker_campplus_gives_wespeakers_embeddings(run_cli, tmp_path: Path) -> None:
    """WeSpeaker's CAM++: 3D-Speaker's keys and a projection head, on WeSpeaker's fbank, sqrt(var + 1e-7)."""
    out = tmp_path / "imported.pt"
    checkpoint = _checkpoint("wespeaker_campplus", tmp_path)
    result = run_cli("import", "-q", "wespeaker", checkpoint, "--config", DATA / "wespeaker_campplus.yaml", out)
    assert result.exit_code == 0, result.stderr
    model = load_model(out)
    assert model.spec["name"] == "campplus" and model.spec["frontend"]["name"] == "wespeaker_fbank"
    assert model.spec["options"]["fcm_channels"] == 4 and "pooling_eps" not in model.spec["options"]
    largest = _parity(model, "wespeaker_campplus")
    assert largest <= 1e-5
    print(f"largest difference from WeSpeaker's CAM++: {largest:.2e}")


def test_3dspeaker_fbank_is_torchaudios_kaldi_fbank_on_unscaled_samples() -> None:
    """3D-Speaker's FBank: torchaudio's Kaldi fbank (povey window, no dither) on the samples in [-1, 1] as
    torchaudio.load gives them, minus the utterance's mean. Where a band's energy falls under float
    epsilon (a quiet recording), the log's floor acts on those samples, not on 16-bit ones."""
    frontend = build_frontend("3dspeaker_fbank", {}, 16000).eval()
    generator = torch.Generator().manual_seed(5)
    loud = 0.3 * (2 * torch.rand(1, 24000, generator=generator) - 1)
    quiet = torch.round(3 * torch.randn(1, 24000, generator=generator)) / 32768.0  # 16-bit audio 3 steps loud
    for waveform, tolerance in ((loud, 1e-3), (quiet, 1e-3)):
        expected = kaldi.fbank(waveform, num_mel_bins=80, sample_frequency=16000, dither=0.0)
        expected = expected - expected.mean(dim=0)
        with torch.no_grad():
            got = frontend(waveform)[0]
        # Both are float32: in the quietest bins (pre-emphasis leaves little energy there) each is about
        # 2e-4 from float64, so they agree within 1e-3 there and far closer elsewhere.
        torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)
        assert (got - expected).abs().median() < 1e-5
    floored = kaldi.fbank(quiet, num_mel_bins=80, sample_frequency=16000, dither=0.0)
    assert (floored == torch.tensor(torch.finfo(torch.float32).eps).log()).any()  # the floor acts here
    scaled = build_frontend("kaldi_fbank", {"dither": 0.0}, 16000).eval()
    with torch.no_grad():
        assert (scaled(quiet)[0] - frontend(quiet)[0]).abs().max() > 0.1  # 16-bit scaling moves the floor


def _run_import(run_cli, source: str, checkpoint: Path, config: Path, out: Path) -> str:
    result = run_cli("import", "-q", source, checkpoint, "--config", config, out)
    assert result.exit_code == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def _config(tmp_path: Path, name: str, edit) -> Path:
    config = yaml.safe_load((DATA / f"{name}.yaml").read_text())
    edit(config)
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_another_network_or_toolkit_is_one_line_naming_both(run_cli, tmp_path: Path) -> None:
    campplus, eres2net = _checkpoint("3dspeaker_campplus", tmp_path), _checkpoint("3dspeaker_eres2net", tmp_path)
    eres2netv2, wespeaker = _checkpoint("3dspeaker_eres2netv2", tmp_path), _checkpoint("wespeaker_campplus", tmp_path)
    out = tmp_path / "out.pt"
    (tmp_path / "hyperparams.yaml").write_text(
        "embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n    input_size: 80\n"
    )
    cases = (
        (eres2netv2, DATA / "3dspeaker_campplus.yaml", "the checkpoint holds ERes2NetV2, not the 3D-Speaker CAM++ "
                                                       "the configuration names (speakerlab.models.campplus"),
        (campplus, DATA / "3dspeaker_eres2netv2.yaml", "the checkpoint holds CAM++, not the 3D-Speaker ERes2NetV2"),
        (eres2net, DATA / "3dspeaker_eres2netv2.yaml", "the checkpoint holds ERes2Net, not the 3D-Speaker ERes2NetV2"),
        (wespeaker, DATA / "3dspeaker_campplus.yaml", "the checkpoint holds a WeSpeaker checkpoint (it holds "
                                                      "WeSpeaker's training head, projection.*), not the 3D-Speaker"),
        (DATA / "wespeaker_ecapa.pt", DATA / "3dspeaker_eres2net.yaml", "holds a WeSpeaker checkpoint"),
        (eres2net, DATA / "wespeaker_resnet34.yaml", "a WeSpeaker config.yaml (model: ResNet34), not a 3D-Speaker "
                                                     "configuration (embedding_model: with obj: and args:)"),
        (campplus, DATA / "wespeaker_campplus.yaml", "a WeSpeaker config.yaml (model: CAMPPlus), not a 3D-Speaker"),
        (campplus, tmp_path / "hyperparams.yaml", "a SpeechBrain hyperparams.yaml (embedding_model: !new:speechbrain"
                                                  ".lobes.models.ECAPA_TDNN.ECAPA_TDNN), not a 3D-Speaker"),
    )  # fmt: skip
    for checkpoint, config, message in cases:
        assert message in _run_import(run_cli, "3dspeaker", checkpoint, config, out)
    # WeSpeaker's importer given 3D-Speaker's ERes2Net: its CAMPPlus configuration names the network it lacks.
    stderr = _run_import(run_cli, "wespeaker", eres2net, DATA / "wespeaker_campplus.yaml", out)
    assert "missing key 'head.conv1.weight'" in stderr and "not the WeSpeaker CAMPPlus" in stderr
    assert not out.exists()


def test_missing_extra_and_misshapen_keys_are_one_line_listing_the_first(run_cli, tmp_path: Path) -> None:
    checkpoint = _checkpoint("3dspeaker_eres2net", tmp_path)
    state = torch.load(checkpoint)
    config, out = DATA / "3dspeaker_eres2net.yaml", tmp_path / "out.pt"
    missing = {key: value for key, value in state.items() if not key.startswith("layer4.0.bns.1.")}
    torch.save(missing, tmp_path / "missing.ckpt")
    stderr = _run_import(run_cli, "3dspeaker", tmp_path / "missing.ckpt", config, out)
    assert "missing keys for 'encoder.stages.3.0.groups.1.1.weight', 'encoder.stages.3.0.groups.1.1.bias', " in stderr
    assert "(and 2 more)" in stderr
    torch.save({**state, "classifier.weight": torch.zeros(3, 16), "classifier.bias": torch.zeros(3)},
               tmp_path / "extra.ckpt")  # fmt: skip
    stderr = _run_import(run_cli, "3dspeaker", tmp_path / "extra.ckpt", config, out)
    assert "unexpected keys 'classifier.weight', 'classifier.bias': not part of the architecture" in stderr
    deeper = _config(tmp_path, "3dspeaker_eres2net",
                     lambda c: c["embedding_model"]["args"].update(num_blocks=[2, 2, 2, 1]))  # fmt: skip
    assert "missing keys for 'encoder.stages.1.1.reduce.0.weight'" in _run_import(
        run_cli, "3dspeaker", checkpoint, deeper, out
    )
    wider = _config(tmp_path, "3dspeaker_eres2net", lambda c: c.update(embedding_size=32))
    assert "key 'seg_1.weight' has shape (16, 1280), the configuration implies (32, 1280)" in _run_import(
        run_cli, "3dspeaker", checkpoint, wider, out
    )
    large = _config(tmp_path, "3dspeaker_eres2net", lambda c: c["embedding_model"]["args"].update(m_channels=8))
    assert "key 'conv1.weight' has shape (4, 1, 3, 3), the configuration implies (8, 1, 3, 3)" in _run_import(
        run_cli, "3dspeaker", checkpoint, large, out
    )
    assert not out.exists()


def test_configurations_we_do_not_build_are_one_line(run_cli, tmp_path: Path) -> None:
    checkpoint, out = _checkpoint("3dspeaker_eres2net", tmp_path), tmp_path / "out.pt"

    def args(**changes):
        return lambda config: config["embedding_model"]["args"].update(changes)

    def features(**changes):
        return lambda config: config["feature_extractor"]["args"].update(changes)

    ecapa = "speakerlab.models.ecapa_tdnn.ECAPA_TDNN.ECAPA_TDNN"
    cases = (
        (lambda config: config["embedding_model"].update(obj=ecapa), f"embedding_model.obj: '{ecapa}' is not one we "
                                                                     "import; choose one of: speakerlab.models"),
        (args(pooling_func="ASTP"), "embedding_model.args.pooling_func: 'ASTP' is not supported (only 'TSTP')"),
        (args(two_emb_layer=True), "embedding_model.args.two_emb_layer: True is not supported (only False)"),
        (args(baseWidth=26), "embedding_model.args.baseWidth: not an argument of ERes2Net we import"),
        (features(n_mels=40), "feature_extractor.args.n_mels 40 is not embedding_model.args.feat_dim 80"),
        (features(mean_nor=False), "feature_extractor.args.mean_nor: False is not supported (only True)"),
        (features(sample_rate=8000), "feature_extractor.args.sample_rate: 8000 is not supported"),
        (args(feat_dim="<no_such_key>"), "cannot resolve '<no_such_key>': no such key"),
        (lambda config: config.update(embedding_model="<embedding_model>"), "embedding_model: expected a mapping"),
    )  # fmt: skip
    for edit, message in cases:
        assert message in _run_import(run_cli, "3dspeaker", checkpoint, _config(tmp_path, "3dspeaker_eres2net", edit),
                                      out)  # fmt: skip
    odd = _config(tmp_path, "3dspeaker_campplus", lambda c: c["embedding_model"]["args"].update(config_str="prelu"))
    assert "embedding_model.args.config_str: 'prelu' is not supported (only 'batchnorm-relu')" in _run_import(
        run_cli, "3dspeaker", _checkpoint("3dspeaker_campplus", tmp_path), odd, out
    )
    assert not out.exists()


def test_a_bare_embedding_model_section_stands_for_the_published_models(run_cli, tmp_path: Path) -> None:
    """A published model (ModelScope) comes without its recipe: the section infer_sv.py builds it from serves,
    with 3D-Speaker's FBank (80 bins, 16 kHz, mean normalisation) assumed."""
    name = "3dspeaker_campplus"
    section = {
        "obj": "speakerlab.models.campplus.DTDNN.CAMPPlus",
        "args": {"feat_dim": 80, "embedding_size": 16, "growth_rate": 4, "bn_size": 2, "init_channels": 16},
    }
    for index, text in enumerate((yaml.safe_dump({"embedding_model": section}), yaml.safe_dump(section))):
        (tmp_path / f"bare{index}.yaml").write_text(text)
        out = tmp_path / f"bare{index}.pt"
        config = tmp_path / f"bare{index}.yaml"
        result = run_cli("import", "-q", "3dspeaker", _checkpoint(name, tmp_path), "--config", config, out)
        assert result.exit_code == 0, result.stderr
        assert _parity(load_model(out), name) <= 1e-5
