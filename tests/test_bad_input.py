"""The nine reported cases of bad input (issue #12), each reproduced through the CLI.

Each test builds the small input of its report and asserts the one line the user
sees and the exit status, or, where the input is accepted, the right result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import kaldiio
import numpy as np
import pytest
import soundfile

from spkverif.cli import cli
from spkverif.io.specifiers import ArchiveWriter
from spkverif.models import build_model
from spkverif.training.checkpoint import model_payload, save_atomic
from tests.conftest import write_data_dir, write_wav
from tests.test_cli import _assert_one_line_error
from tests.test_training_scale import _environment, run_torchrun

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained x-vector model file: extraction is checked, not what it learned."""
    path = tmp_path_factory.mktemp("model") / "final.pt"
    network = build_model("xvector", {"channels": 32, "stats_channels": 64, "embedding_dim": 16})
    save_atomic(model_payload(network.eval()), path)
    return path


def _embeddings(path: Path) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in kaldiio.load_ark(str(path))}


def _write_vectors(path: Path, vectors: dict[str, np.ndarray]) -> str:
    with ArchiveWriter(f"ark,scp:{path}.ark,{path}.scp") as writer:
        for key, vector in vectors.items():
            writer.write(key, np.asarray(vector, dtype=np.float32))
    return f"scp:{path}.scp"


# 1. segments outside their recording --------------------------------------------------------------


def _segmented(tmp_path: Path, lines: list[str]) -> Path:
    write_wav(tmp_path / "r.wav", seconds=3.0)
    data = write_data_dir(tmp_path / "data", {"r": str(tmp_path / "r.wav")}, {line.split()[0]: "s" for line in lines})
    (data / "segments").write_text("".join(f"{line}\n" for line in lines))
    return data


def test_segments_outside_the_recording_are_reported_by_validate_and_extract(
    run_cli, model: Path, tmp_path: Path
) -> None:
    data = _segmented(tmp_path, ["r-a r 3.5 4.0", "r-b r 500 2500", "r-c r 0.5 5.0"])
    result = run_cli("validate", data)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    segments = data / "segments"
    for line, text in (
        (1, "segment starts at 3.5 s, at or past the end of 'r' (3 s long)"),
        (2, "segment starts at 500 s, at or past the end of 'r' (3 s long)"),
        (3, "segment ends at 5 s, more than 0.5 s past the end of 'r' (3 s long)"),
    ):
        assert f"{segments}:{line}: {text}" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"spkverif validate: error: {data}: 3 problem(s) found"
    _assert_one_line_error(
        run_cli("extract", "-q", "--model", model, data, f"ark:{tmp_path / 'e.ark'}"),
        f"spkverif extract: error: {segments}:1: segment starts at 3.5 s",
    )
    assert not (tmp_path / "e.ark").exists()


def test_a_segment_ending_within_the_tolerance_is_clipped(run_cli, model: Path, tmp_path: Path) -> None:
    """Kaldi's extract-segments --max-overshoot 0.5: an end up to 0.5 s past the recording is its end."""
    over = _segmented(tmp_path / "over", ["r-d r 0.5 3.4"])
    exact = _segmented(tmp_path / "exact", ["r-d r 0.5 3.0"])
    assert run_cli("validate", over).exit_code == 0
    for data in (over, exact):
        assert run_cli("extract", "-q", "--model", model, data, f"ark:{data}/e.ark").exit_code == 0
    np.testing.assert_array_equal(_embeddings(over / "e.ark")["r-d"], _embeddings(exact / "e.ark")["r-d"])


# 2. audio with no samples --------------------------------------------------------------------------


def test_audio_without_samples_is_one_error_everywhere(run_cli, model: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "root" / "spk1" / "ok.wav", seconds=1.0)
    empty = tmp_path / "root" / "spk1" / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    files = {"a-ok": str(tmp_path / "root" / "spk1" / "ok.wav"), "b-empty": str(empty)}
    data = write_data_dir(tmp_path / "data", files, {"a-ok": "spk1", "b-empty": "spk1"})
    wav_scp = data / "wav.scp"
    _assert_one_line_error(
        run_cli("extract", "-q", "--model", model, data, f"ark:{tmp_path / 'e.ark'}"),
        f"spkverif extract: error: {wav_scp}:2: recording 'b-empty' has no samples",
    )
    _assert_one_line_error(
        run_cli("train", "-q", "--data", data, "--exp", tmp_path / "exp", "--speakers-per-batch", "1"),
        f"spkverif train: error: {wav_scp}:2: recording 'b-empty' has no samples",
    )
    result = run_cli("validate", data)
    assert result.exit_code == 1 and f"{wav_scp}:2: recording 'b-empty' has no samples" in result.stderr
    prepared = run_cli("prepare", "dir", tmp_path / "root", "--out", tmp_path / "prepared")
    assert prepared.exit_code == 0
    assert (
        f"left out, unreadable or empty: {empty}: no samples" in prepared.stderr
        and "hold no samples, and were left out" in prepared.stderr
    )
    assert "b-empty" not in (tmp_path / "prepared" / "wav.scp").read_text()


def test_padded_short_utterances_are_named(run_cli, model: Path, tmp_path: Path) -> None:
    files = {name: str(write_wav(tmp_path / f"{name}.wav", seconds=seconds)) for name, seconds in
             (("long", 1.0), ("short1", 0.05), ("short2", 0.06))}  # fmt: skip
    (tmp_path / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in files.items()))
    result = run_cli("extract", "--model", model, f"scp:{tmp_path / 'wav.scp'}", f"ark:{tmp_path / 'e.ark'}")
    assert result.exit_code == 0
    assert "2 utterance(s) were shorter than" in result.stderr and "short1, short2" in result.stderr


# 3. PLDA on too little data ------------------------------------------------------------------------


def _speaker_vectors(tmp_path: Path, speakers: int, per_speaker: int, dim: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(speakers, dim)) * 2
    vectors = {f"s{s:02d}-u{u}": centres[s] + rng.normal(size=dim) for s in range(speakers) for u in range(per_speaker)}
    (tmp_path / "utt2spk").write_text("".join(f"{key} {key.split('-')[0]}\n" for key in vectors))
    (tmp_path / "trials").write_text("s00-u0 s00-u1 target\ns00-u0 s01-u0 nontarget\n")
    return _write_vectors(tmp_path / "emb", vectors)


@pytest.mark.parametrize("lda", [[], ["--lda-dim", "2"], ["--lda-dim", "3"], ["--lda-dim", "4"]])
def test_plda_on_too_little_data_says_what_it_needs(run_cli, tmp_path: Path, lda: list[str]) -> None:
    emb = _speaker_vectors(tmp_path, speakers=5, per_speaker=2, dim=256)
    result = run_cli("score", "--method", "plda", "--trials", tmp_path / "trials", "--train-plda", emb,
                     "--utt2spk", tmp_path / "utt2spk", "--plda-model", tmp_path / "plda", *lda, emb,
                     tmp_path / "scores")  # fmt: skip
    _assert_one_line_error(
        result,
        "the within-class scatter of the PLDA training embeddings is singular: rank 5 in dimension 256 "
        "(10 embeddings of 5 speakers); PLDA in 256 dimensions needs at least 261 embeddings",
    )
    assert not (tmp_path / "scores").exists()


def test_plda_with_lda_to_one_dimension_is_refused(run_cli, tmp_path: Path) -> None:
    """Length normalisation after LDA to one dimension leaves +1 and -1: PLDA scores would take two values."""
    emb = _speaker_vectors(tmp_path, speakers=60, per_speaker=6, dim=32)
    result = run_cli("score", "--method", "plda", "--trials", tmp_path / "trials", "--train-plda", emb,
                     "--utt2spk", tmp_path / "utt2spk", "--plda-model", tmp_path / "plda", "--lda-dim", "1", emb,
                     tmp_path / "scores")  # fmt: skip
    _assert_one_line_error(result, "--lda-dim 1 is too small: length normalisation follows LDA", "--lda-dim 2 or more")
    assert not (tmp_path / "scores").exists()


# 4. matrices where vectors belong ------------------------------------------------------------------


def test_feature_matrices_given_to_score_are_named(run_cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    kaldiio.save_ark(str(tmp_path / "feats.ark"), {f"u{i}": rng.normal(size=(100, 40)).astype(np.float32)
                                                   for i in range(2)}, compression_method=2)  # fmt: skip
    (tmp_path / "trials").write_text("u0 u1 target\n")
    _assert_one_line_error(
        run_cli("score", "--trials", tmp_path / "trials", f"ark:{tmp_path / 'feats.ark'}", tmp_path / "s"),
        f"spkverif score: error: {tmp_path / 'feats.ark'}: entry 'u0' is a matrix of shape (100, 40), not a vector",
    )


# 5. several channels -------------------------------------------------------------------------------


def test_multi_channel_audio_warns_by_default_and_takes_the_channel_asked_for(
    run_cli, model: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.3, 0.3, size=(16000, 2)).astype(np.float32)
    soundfile.write(tmp_path / "st.wav", stereo, 16000, subtype="PCM_16")
    for channel in (0, 1):
        soundfile.write(tmp_path / f"ch{channel}.wav", stereo[:, channel], 16000, subtype="PCM_16")
    (tmp_path / "stereo.scp").write_text(f"st {tmp_path / 'st.wav'}\n")
    for channel in (0, 1):  # one utterance a file: each embedded alone, as the stereo one is
        (tmp_path / f"mono{channel}.scp").write_text(f"st {tmp_path / f'ch{channel}.wav'}\n")
    (tmp_path / "segments").write_text("st st 0.0 0.8\n")

    def extract(*options: str, source: str = "stereo.scp") -> tuple[object, dict[str, np.ndarray]]:
        out = tmp_path / f"e{len(list(tmp_path.glob('e*.ark')))}.ark"
        result = run_cli("extract", "--model", model, *options, f"scp:{tmp_path / source}", f"ark:{out}")
        return result, _embeddings(out) if out.exists() else {}

    default, embedded = extract()
    assert default.exit_code == 0 and "'st' has 2 channels; reading channel 0 (choose one with --channel" in (
        default.stderr
    )
    np.testing.assert_array_equal(embedded["st"], extract(source="mono0.scp")[1]["st"])
    chosen, embedded = extract("--channel", "1")
    assert chosen.exit_code == 0 and "channels" not in chosen.stderr
    np.testing.assert_array_equal(embedded["st"], extract(source="mono1.scp")[1]["st"])
    segmented, _ = extract("--segments", str(tmp_path / "segments"))
    assert segmented.exit_code == 0 and "'st' has 2 channels" in segmented.stderr
    _assert_one_line_error(
        extract("--channel", "2")[0], f"{tmp_path / 'stereo.scp'}:1: --channel 2, but 'st' has 2 channel(s)"
    )


# 6. embeddings that are not finite or have no length -----------------------------------------------


@pytest.mark.parametrize("method", ["cosine", "snorm", "plda"])
def test_score_refuses_nan_and_zero_embeddings_by_key(run_cli, tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(0)
    vectors = {f"u{i}": rng.normal(size=8) for i in range(4)}
    vectors["u1"] = np.full(8, np.nan)
    vectors["u2"] = np.zeros(8)
    emb = _write_vectors(tmp_path / "emb", vectors)
    (tmp_path / "trials").write_text("u0 u1 target\nu0 u2 nontarget\nu0 u3 nontarget\n")
    (tmp_path / "utt2spk").write_text("".join(f"{key} {key}\n" for key in vectors))
    plda = ["--plda-model", str(tmp_path / "plda"), "--train-plda", emb, "--utt2spk", str(tmp_path / "utt2spk")]
    options = {"cosine": [], "snorm": ["--cohort", emb], "plda": plda}
    result = run_cli("score", "--method", method, "--trials", tmp_path / "trials", *options[method], emb,
                     tmp_path / "scores")  # fmt: skip
    _assert_one_line_error(
        result, f"spkverif score: error: {tmp_path / 'emb.scp'}:2: 1 vector(s) hold NaN or inf and cannot be scored: u1"
    )
    vectors["u1"] = rng.normal(size=8)
    emb = _write_vectors(tmp_path / "emb", vectors)
    _assert_one_line_error(
        run_cli("score", "--trials", tmp_path / "trials", emb, tmp_path / "scores"),
        f"{tmp_path / 'emb.scp'}:3: 1 vector(s) have length zero (all zeros) and cannot be scored: u2",
    )


def test_report_tells_non_finite_scores_from_missing_ones(run_cli, tmp_path: Path) -> None:
    (tmp_path / "trials").write_text("a b target\na c nontarget\n")
    (tmp_path / "nan").write_text("a b nan\na c 0.1\n")
    (tmp_path / "missing").write_text("a b 0.9\n")
    _assert_one_line_error(
        run_cli("report", "--trials", tmp_path / "trials", tmp_path / "nan"),
        f"spkverif report: error: {tmp_path / 'nan'}:1: score 'nan' is not a finite number",
    )
    result = run_cli("report", "--trials", tmp_path / "trials", tmp_path / "missing")
    _assert_one_line_error(result, "1 trials have no score in", "--allow-missing")
    assert "not a finite number" not in result.stderr


# 7. messages that mislead --------------------------------------------------------------------------


def test_trials_with_ids_of_another_form_say_the_ids_do_not_match(run_cli, tmp_path: Path) -> None:
    emb = _write_vectors(tmp_path / "emb", {"id10270-x6uYqmx31kE-00001": np.ones(4), "id10271-a-00001": -np.ones(4)})
    (tmp_path / "trials").write_text("1 id10270/x6uYqmx31kE/00001.wav id10271/a/00001.wav\n")
    for extra in ([], ["--allow-missing"]):
        result = run_cli("score", "--trials", tmp_path / "trials", *extra, emb, tmp_path / "scores")
        _assert_one_line_error(
            result,
            "none of the 1 trials names ids of the embeddings: the ids do not match (the trials name e.g. "
            "'id10270/x6uYqmx31kE/00001.wav', the embeddings hold e.g. 'id10270-x6uYqmx31kE-00001')",
        )
        assert "--allow-missing" not in result.stderr


def test_a_reader_closing_the_pipe_early_is_said_in_one_line(model: Path, tmp_path: Path) -> None:
    files = {f"u{i:03d}": str(write_wav(tmp_path / f"u{i:03d}.wav", seconds=0.5, seed=i)) for i in range(3)}
    (tmp_path / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in files.items()))
    command = [sys.executable, "-m", "spkverif", "extract", "-q", "--model", str(model),
               f"scp:{tmp_path / 'wav.scp'}", "ark,t:-"]  # fmt: skip
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environment())
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # the reader goes away before anything is written
    stderr = writer.stderr.read().decode()
    assert writer.wait() == 1
    assert stderr.strip().splitlines() == [
        "spkverif extract: error: the reader of standard output closed it early (broken pipe)"
    ]


# 8. a recipe option that deletes an experiment -----------------------------------------------------


def _bash(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", script, *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))


def test_parse_options_refuses_non_boolean_values_for_boolean_options(tmp_path: Path) -> None:
    script = tmp_path / "recipe.sh"
    script.write_text(f"set -euo pipefail\nresume=false\nstage=1\nname=x\n. {ROOT}/bin/parse_options.sh\n"
                      'echo "$resume $stage $name"\n')  # fmt: skip
    assert _bash(str(script), "--resume", "true", "--stage", "-2", "--name", "7", cwd=tmp_path).stdout == "true -2 7\n"
    for option, value, message in (
        ("--resume", "True", "option --resume takes true or false, not 'True'"),
        ("--resume", "", "option --resume takes true or false, not ''"),
        ("--stage", "2x", "option --stage takes a whole number, not '2x'"),
    ):
        result = _bash(str(script), option, value, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.strip() == f"{script}: {message}"


@pytest.mark.parametrize("option", [["--name", ""], ["--name", "../exp"], ["--losses", "aam .."]])
def test_mini_recipe_refuses_a_name_that_would_remove_outside_exp(tmp_path: Path, option: list[str]) -> None:
    result = _bash(str(ROOT / "recipes" / "mini" / "run.sh"), *option, "--stop-stage", "-1", cwd=tmp_path)
    assert result.returncode == 1 and "must name one directory (not empty, no '/', not '.' or '..')" in result.stderr


def test_voxceleb_recipe_with_overwrite_True_keeps_the_experiment(tmp_path: Path) -> None:
    kept = tmp_path / "exp" / "sinc_tdnn_aam" / "models"
    kept.mkdir(parents=True)
    recipe = ROOT / "recipes" / "voxceleb" / "run.sh"
    result = _bash(str(recipe), "--stage", "2", "--stop-stage", "2", "--exp", str(tmp_path / "exp"), "--overwrite",
                   "True", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "option --overwrite takes true or false, not 'True'" in result.stderr
    assert kept.is_dir()


# 9. the torchrun helper shows every rank's whole log -------------------------------------------------


@pytest.mark.slow
def test_torchrun_failure_shows_each_ranks_own_error(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as failure:
        run_torchrun(
            ["train", "-q", "--data", str(tmp_path / "absent"), "--exp", str(tmp_path / "e")], tmp_path / "log"
        )
    message = str(failure.value)
    for rank in (0, 1):
        assert f"/{rank}/stderr.log =====" in message
    assert message.count(f"spkverif train: error: {tmp_path / 'absent'}: no such data directory") == 2


# numeric options: a range for each, stated in --help, checked on the command line and in configurations ----


def _numeric_options():
    from tests.test_cli import _commands

    for name, command in _commands(cli):
        for parameter in command.params:
            if isinstance(parameter, click.Option) and isinstance(parameter.type, click.types._NumberParamTypeBase):
                yield name, parameter


def test_every_numeric_option_has_a_range_and_help_states_it(run_cli) -> None:
    options = list(_numeric_options())
    assert len(options) > 30
    for name, parameter in options:
        assert isinstance(parameter.type, click.types._NumberRangeBase), f"{name} {parameter.opts[-1]} has no range"
        described = parameter.type._describe_range()
        help_text = " ".join(run_cli(*name.split(), "--help").output.split())
        assert f"{described}]" in help_text, (name, parameter.opts[-1], described)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["score", "--trials", "t", "--top-n", "0", "a", "b"],
            "Invalid value for '--top-n': 0 is not in the range x>=1",
        ),
        (
            ["report", "--trials", "t", "--p-target", "1", "s"],
            "Invalid value for '--p-target': 1.0 is not in the range 0<x<1",
        ),
        (
            ["extract", "--model", "m", "--window", "nan", "a", "b"],
            "Invalid value for '--window': 'nan' is not a finite",
        ),
        (
            ["train", "--data", "d", "--exp", "e", "--lr", "-0.1"],
            "Invalid value for '--lr': -0.1 is not in the range x>0",
        ),
        (["train", "--data", "d", "--exp", "e", "--set", "training.epochs=0"], "training.epochs must be x>=1, not 0"),
        (
            ["train", "--data", "d", "--exp", "e", "--set", "loss.margin=.nan"],
            "loss.margin must be a finite number, not nan",
        ),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(run_cli, args: list[str], message: str) -> None:
    _assert_one_line_error(run_cli(*args), message)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("loss.scale=-3", "loss 'aam' needs scale > 0, not -3"),
        ("loss.margin=.inf", "loss.margin must be a finite number, not inf"),
        ("optimizer.momentum=1", "optimizer 'sgd' needs momentum >= 0, < 1, not 1"),
        ("model.embedding_dim=0", "model 'xvector' needs embedding_dim >= 1, not 0"),
        ("augment.noise_snr=[20,10]", "augment.noise_snr must be [low, high] with low <= high, not [20, 10]"),
        ("data.chunk_seconds_max=1.5", "data.chunk_seconds_max 1.5 is below data.chunk_seconds 2.0: set it above"),
    ],
)
def test_component_options_are_checked_against_their_ranges(
    run_cli, tiny_corpus: Path, tmp_path: Path, setting: str, message: str
) -> None:
    result = run_cli("train", "-q", "--dry-run", "--data", tiny_corpus / "train", "--exp", tmp_path / "e",
                     "--speakers-per-batch", "4", "--set", setting)  # fmt: skip
    _assert_one_line_error(result, message)
