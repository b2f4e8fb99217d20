"""`spkverif export`, `spkverif report --filters`, and model sizes through `train --dry-run`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spkverif.models import build_model, count_parameters
from spkverif.models.files import model_fingerprint
from spkverif.stages.export import load_exported
from spkverif.training.checkpoint import load_model, model_payload, save_atomic

SMALL_SINC = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
SINC_FRONTEND = {"name": "sinc", "options": {"num_filters": 16, "channels": [6, 6]}}


def _save(name: str, options: dict, path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(name, options, SINC_FRONTEND if name == "sinc_tdnn" else None)
    if name == "sinc_tdnn":  # move the filters away from their initial values, as training would
        with torch.no_grad():
            model.frontend.filterbank.low_logit.add_(0.5)
    save_atomic(model_payload(model), path)
    return path


def test_export_command_writes_a_model_that_runs_without_spkverif(run_cli, tmp_path: Path) -> None:
    model_file = _save("sinc_tdnn", SMALL_SINC, tmp_path / "final.pt")
    result = run_cli("export", "-q", "--model", model_file, tmp_path / "deploy" / "model.ts")
    assert result.exit_code == 0, result.stderr
    module, metadata = load_exported(tmp_path / "deploy" / "model.ts")
    assert metadata == {
        "model": {"name": "sinc_tdnn", "options": SMALL_SINC, "frontend": SINC_FRONTEND, "sample_rate": 16000},
        "sample_rate": 16000,
        "embedding_dim": 8,
        "min_samples": load_model(model_file).min_samples,
        "fingerprint": model_fingerprint(load_model(model_file)),
    }
    plain = torch.jit.load(str(tmp_path / "deploy" / "model.ts"))
    waveforms = 0.1 * torch.randn(2, 24000)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        assert torch.equal(plain(waveforms), load_model(model_file)(waveforms))
        assert torch.equal(module(waveforms), plain(waveforms))

    missing = run_cli("export", "-q", "--model", tmp_path / "nope.pt", tmp_path / "x.ts")
    assert missing.exit_code == 1 and "no such model file" in missing.stderr


def test_report_filters_plots_a_sincnet_model(run_cli, tmp_path: Path) -> None:
    model_file = _save("sinc_tdnn", SMALL_SINC, tmp_path / "models" / "final.pt")
    result = run_cli("report", "-q", "--filters", model_file)
    assert result.exit_code == 0, result.stderr
    picture = tmp_path / "models" / "filters.png"
    assert result.output.strip() == f"learned filters: {picture}"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000

    result = run_cli("report", "-q", "--filters", model_file, "--out-dir", tmp_path / "plots")
    assert result.exit_code == 0 and (tmp_path / "plots" / "filters.png").is_file()

    fbank = _save("xvector", {"channels": 16, "stats_channels": 32, "embedding_dim": 8}, tmp_path / "x.pt")
    result = run_cli("report", "-q", "--filters", fbank)
    assert result.exit_code == 1 and "no SincNet front end" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = run_cli("report", "-q", tmp_path / "scores")
    assert result.exit_code == 2 and "--trials" in result.stderr


@pytest.mark.parametrize(("name", "options"), [("sinc_tdnn", {}), ("ecapa_tdnn", {}), ("resnet34", {})])
def test_dry_run_prints_the_embedding_network_size(
    run_cli, tiny_corpus: Path, tmp_path: Path, name: str, options: dict
) -> None:
    result = run_cli(
        "train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--model", name,
        "--speakers-per-batch", "4", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f"model_parameters\t{count_parameters(build_model(name, options))}" in result.output
