"""The CLI: documented options, the five stages in-process, and one-line errors for user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest

from spkverif.cli import cli
from spkverif.io.specifiers import load_vectors
from tests.conftest import write_data_dir, write_wav

TINY_MODEL = [
    "--set", "model.channels=32", "--set", "model.stats_channels=64", "--set", "model.embedding_dim=16",
    "--epochs", "1", "--batches-per-epoch", "3", "--speakers-per-batch", "4", "--chunk-seconds", "0.5",
]  # fmt: skip


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


@pytest.mark.parametrize(("name", "command"), list(_commands(cli)))
def test_every_option_is_documented(run_cli, name: str, command: click.Command) -> None:
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            assert parameter.help, f"{name} {parameter.opts} has no help"
    result = run_cli(*name.split(), "--help")
    assert result.exit_code == 0
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            assert parameter.opts[-1] in result.output


@pytest.fixture(scope="module")
def trained(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    exp = tmp_path_factory.mktemp("exp") / "tiny"
    result = CliRunner().invoke(
        cli, ["train", "-q", "--data", str(tiny_corpus / "train"), "--exp", str(exp), *TINY_MODEL]
    )
    assert result.exit_code == 0, result.output
    return exp


def test_train_writes_config_log_checkpoints_and_model(trained: Path) -> None:
    assert (trained / "config.yaml").is_file()
    assert (trained / "models" / "epoch_0001.pt").is_file()
    assert (trained / "models" / "final.pt").is_file()
    records = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[-1]["event"] == "epoch"
    steps = [r for r in records if r["event"] == "step"]
    assert steps and all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in steps)


def test_train_refuses_to_overwrite_without_resume(run_cli, tiny_corpus: Path, trained: Path) -> None:
    result = run_cli("train", "--data", tiny_corpus / "train", "--exp", trained, *TINY_MODEL)
    assert result.exit_code == 1 and "--resume" in result.stderr


def test_compile_without_a_compiler_is_refused_before_training(
    run_cli, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", "no-such-c++")
    exp = tmp_path / "e"
    args = ("--data", tiny_corpus / "train", "--exp", exp, "--compile", "--device", "cpu", *TINY_MODEL)
    result = run_cli("train", *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--compile) on the CPU needs a C++ compiler, and no-such-c++ is not on PATH" in result.stderr
    assert not exp.exists()  # refused while the parts were built, before the run wrote anything


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--preload",), "so data.preload (--preload) cannot work on their waveforms: drop --preload, or"),
        (("--speed-perturb",), "so augment.speed_perturb (--speed-perturb) cannot work on their waveforms"),
        (
            ("--set", "augment.channel_prob=0.2"),
            "augment.channel_prob cannot work on their waveforms: set augment.channel_prob to 0",
        ),
        (("--set", "model.name=sinc_tdnn"), "chunk features are frames of the utterance's (kaldi_fbank or"),
        (("--set", "model.name=sinc_tdnn"), "not sinc: leave --precompute-features off"),
        (("--set", "frontend.snip_edges=false"), "not kaldi_fbank with snip_edges false: leave"),
    ],
)
def test_precomputed_features_refuse_what_needs_waveforms(
    run_cli, tiny_corpus: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    exp = tmp_path / "e"
    args = ("--data", tiny_corpus / "train", "--exp", exp, "--precompute-features", *TINY_MODEL, *extra)
    result = run_cli("train", *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not exp.exists()


def test_dry_run_prints_sizes(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    result = run_cli(
        "train",
        "-q",
        "--data",
        tiny_corpus / "train",
        "--exp",
        tmp_path / "e",
        "--dry-run",
        "--speakers-per-batch",
        "4",
    )
    assert result.exit_code == 0
    assert "model_parameters\t4610524" in result.output
    assert not (tmp_path / "e").exists()


def test_extract_score_report(run_cli, tiny_corpus: Path, trained: Path, tmp_path: Path) -> None:
    test = tiny_corpus / "test"
    emb = f"ark,scp:{tmp_path / 'e.ark'},{tmp_path / 'e.scp'}"
    assert (
        run_cli("extract", "-q", "--model", trained / "models" / "final.pt", f"scp:{test / 'wav.scp'}", emb).exit_code
        == 0
    )
    keys, matrix = load_vectors(f"scp:{tmp_path / 'e.scp'}")
    assert keys == sorted((test / "utt2spk").read_text().split()[::2]) and matrix.shape == (len(keys), 16)
    from_dir = tmp_path / "d.ark"
    assert run_cli("extract", "-q", "--model", trained / "models" / "final.pt", test, f"ark:{from_dir}").exit_code == 0
    np.testing.assert_allclose(load_vectors(f"ark:{from_dir}")[1], matrix, rtol=1e-5, atol=1e-6)

    scores = tmp_path / "scores" / "test.cosine"
    assert run_cli("score", "-q", "--trials", test / "trials", f"scp:{tmp_path / 'e.scp'}", scores).exit_code == 0
    lines = scores.read_text().splitlines()
    assert len(lines) == len((test / "trials").read_text().splitlines())
    assert all(-1.0 <= float(line.split()[2]) <= 1.0 for line in lines)

    result = run_cli("report", "--trials", test / "trials", scores, "--name", "tiny")
    assert result.exit_code == 0 and "tiny" in result.output
    row = json.loads((tmp_path / "scores" / "report.json").read_text())[0]
    assert 0.0 <= row["eer"] <= 1.0 and set(row) >= {"min_dcf_0.01", "min_dcf_0.001", "trials"}
    assert "| tiny |" in (tmp_path / "scores" / "report.md").read_text()


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spkverif ") and ": error: " in lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_data_dir(run_cli, tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("train", "-q", "--data", tmp_path / "nope", "--exp", tmp_path / "e"), "no such data directory"
    )


def test_unknown_loss_and_model(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("train", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--loss", "arcface2"),
        "unknown loss 'arcface2'",
    )
    _assert_one_line_error(
        run_cli("train", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", "--model", "big"),
        "unknown model 'big'",
    )


def test_malformed_line_names_file_and_line(run_cli, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav")
    data = write_data_dir(tmp_path / "d", {"s-1": str(wav), "s-2": str(wav)}, {"s-1": "s", "s-2": "s"})
    (data / "utt2spk").write_text("s-1 s\ns-2\n")
    _assert_one_line_error(run_cli("train", "--data", data, "--exp", tmp_path / "e"), f"{data / 'utt2spk'}:2:")


def test_empty_data_dir(run_cli, tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "d", {}, {})
    _assert_one_line_error(run_cli("train", "--data", data, "--exp", tmp_path / "e"), "empty")


def test_wrong_sample_rate_needs_resample(run_cli, trained: Path, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", rate=8000)
    (tmp_path / "wav.scp").write_text(f"u1 {wav}\n")
    out = f"ark,scp:{tmp_path / 'e.ark'},{tmp_path / 'e.scp'}"
    _assert_one_line_error(
        run_cli("extract", "--model", trained / "models" / "final.pt", f"scp:{tmp_path / 'wav.scp'}", out),
        f"{tmp_path / 'wav.scp'}:1:",
        "--resample",
    )
    assert not (tmp_path / "e.ark").exists() and not (tmp_path / "e.scp").exists()
    result = run_cli(
        "extract", "-q", "--resample", "--model", trained / "models" / "final.pt", f"scp:{tmp_path / 'wav.scp'}", out
    )
    assert result.exit_code == 0 and (tmp_path / "e.scp").is_file()


def test_bad_rspecifier_and_missing_model(run_cli, trained: Path, tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("extract", "--model", trained / "models" / "final.pt", "wav.scp", "ark:x.ark"), "not a Kaldi rspecifier"
    )
    _assert_one_line_error(
        run_cli("extract", "--model", tmp_path / "none.pt", "scp:wav.scp", "ark:x.ark"), "no such model file"
    )


def test_trials_with_missing_embeddings(run_cli, tmp_path: Path) -> None:
    from spkverif.io.specifiers import ArchiveWriter

    with ArchiveWriter(f"ark,scp:{tmp_path / 'e.ark'},{tmp_path / 'e.scp'}") as writer:
        writer.write("a", np.ones(4, dtype=np.float32))
        writer.write("b", np.arange(4, dtype=np.float32))
    (tmp_path / "trials").write_text("a b target\na zz nontarget\n")
    out = tmp_path / "s"
    _assert_one_line_error(
        run_cli("score", "--trials", tmp_path / "trials", f"scp:{tmp_path / 'e.scp'}", out),
        "1 of 2 trials",
        "line 2: zz",
    )
    assert not out.exists()
    assert (
        run_cli(
            "score", "-q", "--allow-missing", "--trials", tmp_path / "trials", f"scp:{tmp_path / 'e.scp'}", out
        ).exit_code
        == 0
    )
    assert out.read_text().split() == ["a", "b", f"{np.arange(4).sum() / (2 * np.sqrt(14)):.6f}"]


def test_report_on_malformed_scores(run_cli, tmp_path: Path) -> None:
    (tmp_path / "trials").write_text("a b target\na c nontarget\n")
    (tmp_path / "s").write_text("a b 0.5\na c high\n")
    _assert_one_line_error(
        run_cli("report", "--trials", tmp_path / "trials", tmp_path / "s"), f"{tmp_path / 's'}:2:", "not a number"
    )


def test_validate_lists_every_problem(run_cli, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav")
    data = write_data_dir(
        tmp_path / "d", {"s-1": str(wav), "s-2": str(tmp_path / "gone.wav")}, {"s-1": "s", "s-2": "s"}
    )
    with open(data / "spk2utt", "a") as handle:
        handle.write("t\n")
    result = run_cli("validate", data)
    assert result.exit_code == 1
    assert "gone.wav" in result.stderr and "speaker 't' has no utterances" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("2 problem(s) found")
