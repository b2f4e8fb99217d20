"""Config precedence (defaults < file and its bases < flags), the flags generated from the declarations,
`defaults:` files, the recipes' configurations, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from spkverif.base.errors import SpkverifError
from spkverif.base.ranges import describe
from spkverif.config import (
    COMPONENT_FLAGS,
    TrainConfig,
    load_train_config,
    option_range,
    parse_override,
    settings,
    settings_markdown,
    train_flags,
)


def test_file_then_flags(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "training: {epochs: 3}\nloss: {name: aam, margin: 0.3}\noptimizer: {name: adam, lr: 0.002}\n"
    )
    config = load_train_config(tmp_path / "c.yaml", [parse_override("training.epochs=7")])
    assert config.training.epochs == 7
    assert config.loss.options == {"margin": 0.3}
    assert config.optimizer.name == "adam" and config.optimizer.options == {"lr": 0.002}
    assert config.training.batches_per_epoch == 100


def test_naming_another_component_drops_the_old_options(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("loss: {name: aam, margin: 0.3}\n")
    config = load_train_config(tmp_path / "c.yaml", [(["loss", "name"], "softmax")])
    assert config.loss.name == "softmax" and config.loss.options == {}


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    config = load_train_config(None, [parse_override("model.channels=64"), parse_override("seed=3")])
    config.save(tmp_path / "saved.yaml")
    again = load_train_config(tmp_path / "saved.yaml")
    assert again.to_dict() == config.to_dict()
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["model"] == {"name": "xvector", "channels": 64}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("training: {epoch: 3}\n", "unknown option training.epoch"),
        ("trainng: {}\n", "unknown section 'trainng'"),
        ("training: {epochs: three}\n", "training.epochs must be int"),
        ("training: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_files_name_themselves(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SpkverifError, match=match) as caught:
        load_train_config(tmp_path / "c.yaml")
    assert caught.value.path == str(tmp_path / "c.yaml")


# one source for every option: the train flags are generated from the declarations ----------------

REPO = Path(__file__).resolve().parents[1]
OWN_TRAIN_OPTIONS = {"data_dir", "exp_dir", "config_path", "settings", "resume", "dry_run", "quiet", "verbose"}


def _train_command() -> click.Command:
    from spkverif.cli import cli

    return cli.commands["train"]


def test_the_train_flags_are_the_declared_ones(run_cli) -> None:
    from spkverif.cli.train import ConfigOption

    declared = {flag.name: flag for flag in train_flags()}
    field_flags = {key for key, item in settings() if item.metadata["flag"]}
    assert field_flags | {flag.key for flag in COMPONENT_FLAGS} == {flag.key for flag in declared.values()}
    options = [p for p in _train_command().params if isinstance(p, click.Option) and p.name != "help"]
    generated = {p.opts[0]: p for p in options if isinstance(p, ConfigOption)}
    assert set(generated) == set(declared)
    assert {p.name for p in options if not isinstance(p, ConfigOption)} == OWN_TRAIN_OPTIONS
    help_text = " ".join(run_cli("train", "--help").output.split())
    for name, flag in declared.items():
        option = generated[name]
        assert option.key == flag.key and option.default is None
        bracket = f"[{flag.key}; {describe(flag.valid)}]" if flag.valid else f"[{flag.key}]"
        assert bracket in help_text, (name, bracket)
        assert " ".join(flag.help.split()) in help_text
    # the flags that existed before the declarations: name -> setting, kept
    before = {
        "--loss": "loss.name", "--model": "model.name", "--mining": "loss.mining",
        "--margin-scheduler": "margin_scheduler.name", "--epochs": "training.epochs",
        "--batches-per-epoch": "training.batches_per_epoch", "--speakers-per-batch": "training.speakers_per_batch",
        "--utts-per-speaker": "training.utts_per_speaker", "--chunk-seconds": "data.chunk_seconds",
        "--lr": "optimizer.lr", "--seed": "seed", "--device": "training.device", "--num-workers": "data.num_workers",
        "--resample": "data.resample", "--noise": "augment.noise", "--rir": "augment.rir",
        "--speed-perturb": "augment.speed_perturb", "--spec-augment": "augment.spec_augment", "--amp": "training.amp",
        "--grad-accum": "training.grad_accum", "--checkpoint-every": "training.checkpoint_every",
        "--average": "training.average_last", "--skip-nonfinite": "training.skip_nonfinite",
        "--valid-data": "training.valid_data", "--valid-trials": "training.valid_trials",
    }  # fmt: skip
    added = {  # flags added since, each its own setting
        "--init": "training.init", "--preload": "data.preload", "--compile": "training.compile",
        "--precompute-features": "data.precompute_features", "--chunk-seconds-max": "data.chunk_seconds_max",
    }  # fmt: skip
    assert {name: flag.key for name, flag in declared.items()} == {**before, **added}
    assert generated["--amp"].type.choices == ("none", "bf16", "fp16")
    switches = ("--resample", "--speed-perturb", "--spec-augment", "--preload", "--compile", "--precompute-features")
    assert all(generated[name].is_flag for name in switches)


def _captured_config(run_cli, monkeypatch: pytest.MonkeyPatch, *args: object) -> TrainConfig:
    captured = {}

    def fake_train(config: TrainConfig, data_dir: str, exp_dir: str, **_: object) -> dict:
        captured["config"] = config
        return {}

    monkeypatch.setattr("spkverif.stages.train.train", fake_train)
    result = run_cli("train", "-q", "--data", "d", "--exp", "e", *args)
    assert result.exit_code == 0, result.output
    return captured["config"]


def test_a_flag_overrides_the_file_and_an_absent_flag_leaves_it(run_cli, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "training: {epochs: 3, amp: bf16, average_last: 4}\naugment: {noise: n, speed_perturb: true}\n"
        "optimizer: {name: adam, lr: 0.002}\nloss: {name: aam, margin: 0.3}\n"
    )
    kept = _captured_config(run_cli, monkeypatch, "--config", tmp_path / "c.yaml")
    assert (kept.training.epochs, kept.training.amp, kept.training.average_last) == (3, "bf16", 4)
    assert kept.augment.noise == "n" and kept.augment.speed_perturb and kept.optimizer.options == {"lr": 0.002}
    flags = ["--epochs", "7", "--average", "2", "--lr", "0.5", "--noise", "m", "--amp", "fp16", "--spec-augment"]
    changed = _captured_config(run_cli, monkeypatch, "--config", tmp_path / "c.yaml", *flags, "--loss", "softmax")
    assert (changed.training.epochs, changed.training.amp, changed.training.average_last) == (7, "fp16", 2)
    assert changed.augment.noise == "m" and changed.augment.spec_augment and changed.augment.speed_perturb
    assert changed.optimizer.name == "adam" and changed.optimizer.options == {"lr": 0.5}
    assert changed.loss.name == "softmax" and changed.loss.options == {}
    last = _captured_config(run_cli, monkeypatch, "--epochs", "7", "--set", "training.epochs=9")
    assert last.training.epochs == 9


def test_amp_is_checked_once_where_the_configuration_is_read(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("training: {amp: fp32}\n")
    with pytest.raises(SpkverifError, match=r"training\.amp must be none, bf16 or fp16, not 'fp32'") as caught:
        load_train_config(tmp_path / "c.yaml")
    assert caught.value.path == str(tmp_path / "c.yaml")


def test_the_documented_table_is_the_declared_one() -> None:
    assert settings_markdown() in (REPO / "docs" / "configuration.md").read_text()
    assert option_range("seed") == option_range("training.checkpoint_every") and option_range("optimizer.lr")


# configurations by difference: `defaults:` ---------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_merge_section_by_section_through_a_chain(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "seed: 4\ntraining: {epochs: 3, log_every: 5}\nloss: {name: aam, margin: 0.3}\n")
    _write(tmp_path / "mid" / "mid.yaml", "defaults: ../base.yaml\ntraining: {epochs: 6}\nloss: {scale: 20}\n")
    top = _write(tmp_path / "top.yaml", "defaults: mid/mid.yaml\nmodel: {name: xvector, channels: 64}\n")
    config = load_train_config(top, [parse_override("training.log_every=7")])
    assert config.seed == 4 and config.training.epochs == 6 and config.training.log_every == 7
    assert config.loss.name == "aam" and config.loss.options == {"margin": 0.3, "scale": 20}
    assert config.model.options == {"channels": 64}
    saved = tmp_path / "saved.yaml"
    config.save(saved)
    assert "defaults" not in yaml.safe_load(saved.read_text())
    assert load_train_config(saved).to_dict() == config.to_dict()


def test_a_component_named_anew_drops_the_bases_options(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "loss: {name: aam, margin: 0.3, scale: 20}\nmodel: {name: xvector, channels: 64}\n")
    top = _write(tmp_path / "top.yaml", "defaults: base.yaml\nloss: {name: softmax}\nmodel: {channels: 32}\n")
    config = load_train_config(top)
    assert config.loss.name == "softmax" and config.loss.options == {}
    assert config.model.name == "xvector" and config.model.options == {"channels": 32}
    again = load_train_config(top, [(["loss", "name"], "aam")])
    assert again.loss.options == {}


def test_a_cycle_of_defaults_names_every_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "defaults: b.yaml\n")
    b = _write(tmp_path / "b.yaml", "defaults: a.yaml\n")
    with pytest.raises(SpkverifError, match="files include each other") as caught:
        load_train_config(a)
    assert f"{a.resolve()} -> {b.resolve()} -> {a.resolve()}" in str(caught.value)
    itself = _write(tmp_path / "self.yaml", "seed: 1\ndefaults: self.yaml\n")
    with pytest.raises(SpkverifError, match="files include each other"):
        load_train_config(itself)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: 1\ndefaults: missing.yaml\n", "2: defaults: no such base file 'missing.yaml'"),
        ("defaults: [a.yaml, b.yaml]\n", "1: defaults: must name one base file (relative to this one), not ['a.yaml'"),
        ("defaults:\n", "1: defaults: must name one base file"),
    ],
)
def test_a_bad_defaults_value_is_one_error_at_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "c.yaml", text)
    with pytest.raises(SpkverifError) as caught:
        load_train_config(path)
    assert str(caught.value).startswith(f"{path}:{message}")


def test_an_error_in_a_base_file_names_the_base(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "trainng: {}\n")
    top = _write(tmp_path / "top.yaml", "defaults: base.yaml\n")
    with pytest.raises(SpkverifError, match="unknown section 'trainng'") as caught:
        load_train_config(top)
    assert caught.value.path == str(tmp_path / "base.yaml")


def test_the_cli_reports_a_missing_base_on_one_line(run_cli, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "defaults: ../nowhere.yaml\n")
    result = run_cli("train", "--data", "d", "--exp", "e", "--config", path)
    assert result.exit_code == 1
    base = tmp_path / "../nowhere.yaml"
    assert result.stderr.splitlines() == [
        f"spkverif train: error: {path}:1: defaults: no such base file '../nowhere.yaml' ({base})"
    ]


# the recipes' configurations, written by difference, resolve to what they held in full ---------------

RECIPE_CONFIGS = sorted((REPO / "recipes").glob("*/conf/**/*.yaml"))


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_recipe_configuration_resolves(path: Path) -> None:
    resolved = load_train_config(path).to_dict()
    assert "defaults" not in resolved
    assert resolved["model"]["name"] and resolved["loss"]["name"]


def _resolved(name: str) -> dict:
    return load_train_config(REPO / "recipes" / name).to_dict()


def test_the_recipe_variants_hold_what_their_full_copies_held() -> None:
    """A short identity check (the full one compares every configuration with its copy before #14)."""
    budget = {"epochs": 4, "batches_per_epoch": 100, "speakers_per_batch": 64, "utts_per_speaker": 1, "log_every": 10}
    xvector = {"name": "xvector", "channels": 256, "stats_channels": 768, "embedding_dim": 256}
    aam = _resolved("mini/conf/losses/aam.yaml")
    assert {key: aam["training"][key] for key in budget} == budget and aam["model"] == xvector
    assert aam["loss"] == {"name": "aam", "preset": "paper"} and aam["optimizer"] == {"name": "adam", "lr": 0.001}
    assert _resolved("mini/conf/losses/triplet.yaml")["training"]["utts_per_speaker"] == 4
    assert _resolved("mini/conf/xvector_aam.yaml")["loss"] == {"name": "aam", "margin": 0.2, "scale": 10}
    sinc_xvector = _resolved("mini/conf/models/sinc_xvector.yaml")
    # the kept drift: the model comparison's s = 30 (models/xvector.yaml)
    assert sinc_xvector["loss"] == {"name": "aam", "margin": 0.2, "scale": 30}
    assert sinc_xvector["model"] == {
        "name": "sinc_tdnn", "channels": 256, "stats_channels": 768, "embedding_dim": 256,
        "batch_norm": True, "weight_norm": False, "second_segment_layer": True,
    }  # fmt: skip
    resnet = _resolved("voxceleb/conf/resnet34_aam.yaml")
    assert resnet["model"] == {"name": "resnet34", "base_channels": 32, "embedding_dim": 256}
    assert resnet["loss"] == {"name": "aam", "preset": "modern"} and resnet["scheduler"]["name"] == "exponential"
    assert resnet["augment"]["noise_prob"] == 0.6 and resnet["augment"]["noise"] == "data"
    assert resnet["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0001, "nesterov": True}
    softmax = _resolved("voxceleb/conf/sinc_tdnn_softmax.yaml")
    assert softmax["loss"] == {"name": "softmax"} and softmax["training"]["epochs"] == 560
    assert softmax["model"] == _resolved("voxceleb/conf/sinc_tdnn_aam.yaml")["model"]
