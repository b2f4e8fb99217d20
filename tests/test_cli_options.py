"""Options shared by several subcommands are declared once, and a stage's defaults are its module's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spkverif.cli import ModuleDefault, cli
from spkverif.stages.extract import BATCH_SIZE
from spkverif.stages.prepare.mini import MiniOptions
from spkverif.stages.report import ReportSettings
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
    monkeypatch.setattr("spkverif.stages.extract.extract", lambda *args, **kwargs: seen.update(batch_size=args[4]))
    assert run_cli("extract", "-q", "--model", "m", "a", "b").exit_code == 0
    assert seen["batch_size"] == BATCH_SIZE
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
                found[option].add((type(parameter.type).__name__, parameter.required, repr(parameter.default)))
    assert len(found["--out"]) == 1 and next(iter(found["--out"]))[:2] == ("Path", True)
    assert found["--jobs"] == {("IntRange", False, "4")}
    assert found["--device"] == {("StringParamType", False, "'auto'")}
    assert all(isinstance(p, ModuleDefault) for p in cli.commands["prepare"].commands["mini"].params[1:8])
