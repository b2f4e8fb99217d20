"""Options shared by several subcommands are declared once, and a stage's defaults are its module's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from spkverif.backends.plda import EM_ITERATIONS
from spkverif.backends.snorm import TOP_N
from spkverif.cli import PIPELINE, cli
from spkverif.cli.options import Option
from spkverif.runtime import DEVICE
from spkverif.stages.extract import BATCH_SIZE, DEFAULT_STEP_SECONDS
from spkverif.stages.prepare.mini import MiniOptions
from spkverif.stages.report import ReportSettings
from spkverif.stages.verify import APPLICATION_P_TARGET
from tests.test_cli import _commands


def test_prepare_mini_passes_the_modules_defaults(run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("spkverif.stages.prepare.mini.prepare_mini", lambda out, options: seen.update(options=options))
    assert run_cli("prepare", "mini", "--out", tmp_path / "m", "--jobs", "2").exit_code == 0
    assert seen["options"] == MiniOptions(jobs=2)
    assert run_cli("prepare", "mini", "--out", tmp_path / "m", "--num-trials", "8", "--jobs", "1").exit_code == 0
    assert seen["options"] == MiniOptions(num_trials=8, jobs=1)


def test_report_and_extract_defaults_come_from_their_modules(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("spkverif.stages.report.report", lambda *args, **kwargs: seen.update(settings=args[4]))
    assert run_cli("report", "--trials", "t", "s").exit_code == 0
    assert seen["settings"] == ReportSettings()
    spy = lambda *args, **kwargs: seen.update(batch_size=args[4], device=args[3])  # noqa: E731
    monkeypatch.setattr("spkverif.stages.extract.extract", spy)
    assert run_cli("extract", "-q", "--model", "m", "a", "b").exit_code == 0
    assert seen["batch_size"] == BATCH_SIZE and seen["device"] == DEVICE
    help_text = " ".join(run_cli("extract", "--help").output.split())
    assert f"[default: {BATCH_SIZE}; x>=1]" in help_text


def test_shared_options_read_the_same_everywhere() -> None:
    """--out of every preparer, --jobs (but prepare mini's) and extract's and verify's --device are one declaration."""
    found: dict[str, set[tuple]] = {"--out": set(), "--jobs": set(), "--device": set()}
    for name, command in _commands(cli):
        for parameter in command.params:
            option = parameter.opts[0]
            shared = {"--out": name.startswith("prepare "), "--jobs": name != "prepare mini"}
            if shared.get(option, name in ("extract", "verify") and option == "--device"):
                default = parameter.get_default(click.Context(command))
                found[option].add((type(parameter.type).__name__, parameter.required, repr(default)))
    assert len(found["--out"]) == 1 and next(iter(found["--out"]))[:2] == ("Path", True)
    assert found["--jobs"] == {("IntRange", False, "4")}
    assert found["--device"] == {("StringParamType", False, "'auto'")}
    mini = cli.commands["prepare"].commands["mini"]
    assert all(isinstance(p, Option) and callable(p.default) for p in mini.params[1:8])


def test_the_defaults_a_stage_applies_itself_are_shown_from_its_source(run_cli) -> None:
    """--top-n, --plda-iters, --step and verify's --p-target stay None unless given (the stage applies them
    where they apply); their help reads the value where the stage declares it."""
    shown = {
        ("score",): [f"closest cohort entries per side. [default: {TOP_N}; x>=1]",
                     f"plda: EM iterations. [default: {EM_ITERATIONS}; x>=1]"],
        ("report",): [f"the highest N. [default: {TOP_N}; x>=1]"],
        ("extract",): [f"[default: {DEFAULT_STEP_SECONDS:g} with --window; x>0]"],
        ("verify",): [f"[default: {APPLICATION_P_TARGET:g}; 0<x<1]"],
    }  # fmt: skip
    for command, texts in shown.items():
        help_text = " ".join(run_cli(*command, "--help").output.split())
        for text in texts:
            assert text in help_text, (command, text)


def test_the_defaults_a_stage_applies_itself_reach_it_as_none(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("spkverif.stages.score.score", lambda *args, **kwargs: seen.update(kwargs))
    assert run_cli("score", "-q", "--method", "asnorm", "--trials", "t", "a", "b").exit_code == 0
    assert seen["options"] == {}  # no top_n, no plda_iters: the back end's own defaults apply
    monkeypatch.setattr("spkverif.stages.extract.extract", lambda *args, **kwargs: seen.update(kwargs))
    assert run_cli("extract", "-q", "--model", "m", "--window", "3", "a", "b").exit_code == 0
    assert seen["step"] is None and seen["window"] == 3
    monkeypatch.setattr("spkverif.stages.verify.verify", lambda *args, **kwargs: seen.update(p_target=args[3]))
    assert run_cli("verify", "-q", "--model", "m", "a.wav", "b.wav").exit_code == 0
    assert seen["p_target"] is None  # the stage applies APPLICATION_P_TARGET to calibrated LLRs alone


def test_commands_are_listed_in_pipeline_order_and_each_help_has_an_example(run_cli) -> None:
    listed = [line.split()[0] for line in run_cli("--help").output.split("Commands:")[1].strip().splitlines()]
    assert listed == [family.command.name for family in PIPELINE]
    assert listed[:8] == ["prepare", "data", "validate", "shard", "train", "extract", "score", "report"]
    for name, _ in _commands(cli):
        help_text = run_cli(*name.split(), "--help").output
        assert "Example" in help_text and f"spkverif {name}" in help_text.split("Example")[1], name
