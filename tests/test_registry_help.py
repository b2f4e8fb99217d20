"""Every registry's names in the --help of the option that takes them, `spkverif list`, and option ranges."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from typing import Annotated

import pytest
from click.testing import CliRunner

import spkverif
from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf, Range, Registry, builder_options
from spkverif.cli import cli
from spkverif.losses import LOSSES, build_loss
from spkverif.losses.base import LossHead
from spkverif.models import MODELS, build_model
from spkverif.stages.catalogue import CATALOGUE


def _run_wide(*args: str):
    """`spkverif ARGS` on a 250-column terminal, so that no table cell wraps."""
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


def _import_every_module() -> None:
    for module in pkgutil.walk_packages(spkverif.__path__, "spkverif."):
        if module.name != "spkverif.__main__":
            importlib.import_module(module.name)


def _option_help(run_cli, option: str) -> str:
    """The lines of `COMMAND --help` that belong to one option: "train --loss" -> the --loss entry
    ("data decode --decoder": a subcommand of a group; "import SOURCE": a positional argument)."""
    words = option.split()
    at = next(i for i, word in enumerate(words) if word.startswith("-") or word.isupper())
    flag = words[at]
    output = run_cli(*words[:at], "--help").output
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s+{re.escape(flag)}\b", line))
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"  -", lines[i]) or not lines[i].startswith(" ")),
        len(lines),
    )
    return "\n".join(lines[start:end])


def _listed_names(text: str) -> set[str]:
    """Names at the start of a choices block line: '  aam   Additive ...' -> aam."""
    return set(re.findall(r"^\s{2,}([\w-]+)  +\S", text, re.M))


def test_every_registry_is_in_the_catalogue() -> None:
    _import_every_module()
    catalogued = [entry.registry() for entry in CATALOGUE.values()]
    missing = [registry.kind for registry in Registry.instances if not any(registry is r for r in catalogued)]
    assert not missing, f"registries not in spkverif.stages.catalogue.CATALOGUE (so not in --help): {missing}"


@pytest.mark.parametrize("key", list(CATALOGUE))
def test_every_name_is_in_the_help_of_its_option(run_cli, key: str) -> None:
    entry = CATALOGUE[key]
    registry = entry.registry()
    assert registry.names(), f"{key} has nothing registered"
    text = _option_help(run_cli, entry.option)
    if entry.option.startswith("train "):  # one line of names: the descriptions are `spkverif list`'s
        assert set(registry.names()) <= set(re.findall(r"[\w-]+", text)), text
        return
    assert set(registry.names()) <= _listed_names(text), text
    for name in registry.names():
        first_words = " ".join(registry.describe(name).split()[:3])
        assert first_words in " ".join(text.split()), f"{key} {name}: description missing from {entry.option} help"


def test_list_shows_every_name_with_its_options_defaults_and_ranges(run_cli) -> None:
    result = _run_wide("list")
    assert result.exit_code == 0, result.output
    for key, entry in CATALOGUE.items():
        assert f"{key} ({entry.option})" in result.output
        registry = entry.registry()
        for name in registry.names():
            assert re.search(rf"│ {re.escape(name)} +│", result.output), name
            for option in builder_options(registry.get(name)):
                line = f"{option.name}: {option.type} = {option.default!r}"
                if option.valid is not None:
                    line += f"  [{option.valid}]"
                assert line in result.output, line
    assert "margin: float = 0.2  [> 0]" in result.output  # triplet, checked by hand once
    assert "mining: str = 'batch-hard'  [batch-all, batch-hard, semi-hard]" in result.output


def test_list_one_kind_and_an_unknown_kind(run_cli) -> None:
    result = _run_wide("list", "backends")
    assert result.exit_code == 0 and "backends (score --method)" in result.output
    assert "losses (" not in result.output
    assert "top_n: int = 300  [>= 1]" in result.output
    bad = run_cli("list", "nets")
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == [
        "spkverif list: error: unknown registry 'nets'; choose one of: " + ", ".join(CATALOGUE)
    ]


def test_a_new_model_and_loss_appear_without_touching_the_cli(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MODELS, "_builders", dict(MODELS._builders))
    monkeypatch.setattr(LOSSES, "_builders", dict(LOSSES._builders))

    @MODELS.register("dummy_net")
    def build_dummy_net(width: Count = 7):
        """A dummy network, registered by the test only."""

    @LOSSES.register("dummy_loss")
    def build_dummy_loss(embedding_dim: int, num_classes: int, spread: Annotated[float, Range(gt=0, le=2)] = 1.5):
        """A dummy loss, registered by the test only."""

    assert "dummy_net" in re.findall(r"\w+", _option_help(run_cli, "train --model"))
    assert "dummy_loss" in re.findall(r"\w+", _option_help(run_cli, "train --loss"))
    listing = _run_wide("list", "models", "losses").output
    assert "A dummy network, registered by the test only." in listing
    assert "width: int = 7  [>= 1]" in listing
    assert "spread: float = 1.5  [> 0, <= 2]" in listing


def test_unknown_scoring_method_is_one_line_listing_the_methods(run_cli, tmp_path) -> None:
    result = run_cli("score", "--method", "cosin", "--trials", tmp_path / "t", "scp:x.scp", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "spkverif score: error: unknown scoring method 'cosin'; choose one of: asnorm, cosine, plda, snorm"
    ]


def test_options_out_of_range_are_user_errors_naming_the_range() -> None:
    with pytest.raises(SpkverifError, match=r"^loss 'triplet' needs margin > 0, not 0$"):
        build_loss("triplet", 8, 4, {"margin": 0})
    with pytest.raises(
        SpkverifError, match=r"^unknown triplet mining 'hardest'; choose one of: batch-all, batch-hard, semi-hard$"
    ):
        build_loss("triplet", 8, 4, {"mining": "hardest"})
    with pytest.raises(SpkverifError, match=r"^unknown aam preset 'wespeaker'; choose one of: paper, modern$"):
        build_loss("aam", 8, 4, {"preset": "wespeaker"})
    with pytest.raises(SpkverifError, match=r"needs center_lr >= 0, <= 1, not 1.5"):
        build_loss("center", 8, 4, {"center_lr": 1.5})
    with pytest.raises(SpkverifError, match=r"model 'xvector' needs channels >= 1, not 0"):
        build_model("xvector", {"channels": 0})
    with pytest.raises(SpkverifError, match=r"needs scale a number > 0, not 'big'"):
        build_loss("coco", 8, 4, {"scale": "big"})
    assert isinstance(build_loss("aam", 8, 4, {"margin": None, "scale": 30}), LossHead)


def test_range_and_one_of() -> None:
    assert Range(gt=0).problem(1e-9) is None and Range(gt=0).problem(0) == "> 0"
    assert Range(ge=0, lt=1).problem(1) == ">= 0, < 1" and Range(ge=0, lt=1).problem(0) is None
    assert Range(ge=0).problem(float("nan")) == ">= 0"
    assert Range(ge=0).problem(True) == "a number >= 0"
    assert Range(ge=1).problem(None) is None
    assert OneOf(("a", "b"), "letter").problem("c") == "unknown letter 'c'; choose one of: a, b"
    assert OneOf(("a", "b")).problem("b") is None


def test_the_cli_imports_no_registry_until_help_is_shown() -> None:
    code = "import sys, spkverif.cli; print(sorted(m for m in sys.modules if m in ('torch', 'spkverif.losses')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_train_refuses_an_option_out_of_range_in_one_line(run_cli, tiny_corpus, tmp_path) -> None:
    result = run_cli(
        "train", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--loss", "triplet",
        "--set", "loss.margin=0", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["spkverif train: error: loss 'triplet' needs margin > 0, not 0"]
