"""Config precedence (defaults < file < flags) and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spkverif.config import load_train_config, parse_override
from spkverif.errors import SpkverifError


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
