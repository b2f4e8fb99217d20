"""The edge between spkverif and the machine (issue: nothing lost at the filesystem's edge).

Every input file a command names, missing, is one line and exit 1; every output the
machine refuses (file-size limit, full or read-only file system, a path under a regular
file) is one line naming the output, exit 1, no temporary file anywhere and the earlier
output intact; outputs get the mode the umask gives; audio that is not finite is refused
with the utterance and the time; every option a message recommends exists on the command;
recipes delete nothing without --overwrite true.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from spkverif.base.errors import SpkverifError
from spkverif.cli import cli
from spkverif.io.atomic import AtomicFileGroup, atomic_directory, atomic_write
from spkverif.io.audio import MAX_ABS_SAMPLE, AudioReader, bad_sample
from tests.conftest import write_data_dir, write_wav
from tests.fake_corpora import make_fake_voxceleb1

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "legacy" / "sinc_tdnn.pt"
SPKVERIF = [sys.executable, "-m", "spkverif"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, stage: str) -> str:
    """The single stderr line of a failed command, checked to be `spkverif STAGE: error: ...` and exit 1."""
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"spkverif {stage}: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert "Traceback" not in result.stderr
    return errors[0]


def temporary_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


# --- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "new.txt") as handle:
            handle.write("x\n")
        group = AtomicFileGroup()
        group.open(tmp_path / "emb.ark").write(b"x")
        group.open(tmp_path / "emb.scp", "w", index=True).write("x\n")
        group.commit()
        with atomic_directory(tmp_path / "data") as staging:
            (staging / "utt2spk").write_text("a s\n")
    finally:
        os.umask(old)
    for name in ("new.txt", "emb.ark", "emb.scp"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_rewritten_file_or_data_directory_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "scores"
    target.write_text("old\n")
    target.chmod(0o664)
    with atomic_write(target) as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n" and target.stat().st_mode & 0o777 == 0o664
    data = tmp_path / "data"
    data.mkdir()
    (data / "utt2spk").write_text("a s\n")
    data.chmod(0o750)
    with atomic_directory(data) as staging:
        (staging / "utt2spk").write_text("b s\n")
    assert (data / "utt2spk").read_text() == "b s\n" and data.stat().st_mode & 0o777 == 0o750


# --- fixtures: a small corpus, embeddings, trials ------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four 1-s utterances of two speakers, their embeddings by the legacy SincTDNN model, trials."""
    root = tmp_path_factory.mktemp("edges")
    files = {f"u{i}": str(write_wav(root / "audio" / f"s{i // 2}" / f"u{i}.wav", seed=i)) for i in range(4)}
    data = write_data_dir(root / "data", files, {f"u{i}": f"s{i // 2}" for i in range(4)})
    trials = root / "trials"
    trials.write_text("u0 u1 target\nu2 u3 target\nu0 u2 nontarget\nu1 u3 nontarget\n")
    data_trials = data / "trials"
    shutil.copy(trials, data_trials)
    scp = root / "emb.scp"
    result = invoke("extract", "-q", "--model", MODEL, f"scp:{data / 'wav.scp'}", f"ark,scp:{root / 'emb.ark'},{scp}")
    assert result.exit_code == 0, result.stderr
    scores = root / "test.cosine"
    assert invoke("score", "-q", "--trials", trials, f"scp:{scp}", scores).exit_code == 0
    config = root / "config.yaml"
    config.write_text("model:\n  name: xvector\n")
    vox = make_fake_voxceleb1(root / "vox1", dev_speakers=1, test_speakers=2, videos=1, utts=2, trials=4)
    return {
        "root": root,
        "data": data,
        "trials": trials,
        "scp": scp,
        "scores": scores,
        "wav": Path(files["u0"]),
        "wav2": Path(files["u1"]),
        "config": config,
        "vox1": vox.root,
    }


# Each command with one input replaced by `{M}`, a path that does not exist; `{name}` are the
# corpus fixture's files, `{out}` a fresh output path. Every input file argument and option of
# every command appears (rspecifiers as scp:{M}).
MISSING_INPUTS = [
    ("prepare", "prepare dir {M} --out {out}"),
    ("prepare", "prepare voxceleb1 {M} --out {out}"),
    ("prepare", "prepare voxceleb1 {vox1} --out {out} --trials-dir {M}"),
    ("prepare", "prepare voxceleb1 {vox1} --out {out} --trials-o {M}"),
    ("prepare", "prepare voxceleb1 {vox1} --out {out} --meta {M}"),
    ("prepare", "prepare voxceleb2 {M} --out {out}"),
    ("prepare", "prepare librispeech {M} --out {out}"),
    ("prepare", "prepare musan {M} --out {out}"),
    ("prepare", "prepare rirs {M} --out {out}"),
    ("data", "data combine {out} {data} {M}"),
    ("data", "data subset {M} {out} --first 1"),
    ("data", "data subset {data} {out} --utt-list {M}"),
    ("data", "data subset {data} {out} --spk-list {M}"),
    ("data", "data fix {M} --out {out}"),
    ("data", "data copy {M} {out}"),
    ("data", "data durations {M}"),
    ("data", "data decode {M} {out} --audio-dir {out}_audio"),
    ("shard", "shard {M} {out} --shard-dir {out}_shards"),
    ("validate", "validate {M}"),
    ("validate", "validate {data} --trials {M}"),
    ("train", "train --data {M} --exp {out}"),
    ("train", "train --data {data} --exp {out} {small} --config {M}"),
    ("train", "train --data {data} --exp {out} {small} --init {M}"),
    ("train", "train --data {data} --exp {out} {small} --noise {M}"),
    ("train", "train --data {data} --exp {out} {small} --rir {M}"),
    ("train", "train --data {data} --exp {out} {small} --valid-data {M} --valid-trials {trials}"),
    ("train", "train --data {data} --exp {out} {small} --valid-data {data} --valid-trials {M}"),
    ("extract", "extract --model {M} scp:{data}/wav.scp ark:{out}"),
    ("extract", "extract --model " + str(MODEL) + " scp:{M} ark:{out}"),
    ("extract", "extract --model " + str(MODEL) + " ark:{M} ark:{out}"),
    ("extract", "extract --model " + str(MODEL) + " scp:{data}/wav.scp ark:{out} --segments {M}"),
    ("export", "export --model {M} {out}.onnx"),
    ("import", "import wespeaker {M} --config " + str(ROOT / "tests/data/wespeaker_resnet34.yaml") + " {out}"),
    ("import", "import wespeaker " + str(ROOT / "tests/data/wespeaker_resnet34.pt") + " --config {M} {out}"),
    ("verify", "verify --model {M} {wav} {wav2}"),
    ("verify", "verify --model " + str(MODEL) + " {M} {wav2}"),
    ("verify", "verify --model " + str(MODEL) + " {wav} {M}"),
    ("verify", "verify --model " + str(MODEL) + " --pairs {M}"),
    ("verify", "verify --model " + str(MODEL) + " --calibration {M} {wav} {wav2}"),
    (
        "verify",
        "verify --model " + str(MODEL) + " --calibration {M} --cohort scp:{scp} --cohort-utt2spk {M} {wav} {wav2}",
    ),
    ("score", "score --trials {M} scp:{scp} {out}"),
    ("score", "score --trials {trials} scp:{M} {out}"),
    ("score", "score --trials {trials} ark:{M} {out}"),
    ("score", "score --trials {trials} --mean scp:{M} scp:{scp} {out}"),
    ("score", "score --trials {trials} --method asnorm --cohort scp:{M} scp:{scp} {out}"),
    ("score", "score --trials {trials} --method asnorm --cohort scp:{scp} --cohort-utt2spk {M} scp:{scp} {out}"),
    ("score", "score --trials {trials} --method plda --plda-model {M} scp:{scp} {out}"),
    (
        "score",
        "score --trials {trials} --method plda --plda-model {out}.plda --train-plda scp:{M} --utt2spk {data}/utt2spk "
        "scp:{scp} {out}",
    ),
    (
        "score",
        "score --trials {trials} --method plda --plda-model {out}.p --train-plda scp:{scp} --utt2spk {M} "
        "scp:{scp} {out}",
    ),
    ("report", "report --trials {M} {scores}"),
    ("report", "report --trials {trials} {M}"),
    ("report", "report --trials {trials} --out-dir {out} --utt2spk {M} {scores}"),
    ("report", "report --trials {trials} --out-dir {out} --durations {M} {scores}"),
    ("report", "report --trials {trials} --out-dir {out} --filters {M} {scores}"),
    ("report", "report --trials {trials} --out-dir {out} --calibrate {M} --calibrate-trials {trials} {scores}"),
    ("report", "report --trials {trials} --out-dir {out} --calibrate {scores} --calibrate-trials {M} {scores}"),
    ("report", "report --trials {trials} --out-dir {out} --embeddings scp:{M} --model {M} {scores}"),
    ("report", "report --training {M}"),
    (
        "report",
        "report --trials {trials} --out-dir {out} --embeddings scp:{scp} --model "
        + str(MODEL)
        + " --cohort scp:{scp} --cohort-utt2spk {M} {scores}",
    ),
]


@pytest.mark.parametrize(("stage", "template"), MISSING_INPUTS, ids=[t for _, t in MISSING_INPUTS])
def test_a_missing_input_is_one_line(corpus: dict[str, Path], tmp_path: Path, stage: str, template: str) -> None:
    missing = tmp_path / "nowhere" / "nope"
    names = {key: str(value) for key, value in corpus.items()}
    small = "--speakers-per-batch 2 --utts-per-speaker 2 --chunk-seconds 0.5 --batches-per-epoch 1 --epochs 1"
    argv = template.format(M=missing, out=tmp_path / "out", small=small, **names).split()
    line = one_line_error(invoke(*argv), stage)
    assert "nope" in line or "nowhere" in line, line
    assert not temporary_files(tmp_path) and not temporary_files(corpus["root"])


def test_every_input_path_option_is_walked() -> None:
    """Each path-typed option or argument that a command reads appears in MISSING_INPUTS
    (outputs, listed here, are tested by the write faults below)."""
    outputs = {"--out", "out", "output", "--exp", "--out-dir", "--save-calibration", "--det", "--audio-dir"}
    outputs |= {"--decode-to", "--shard-dir", "wspecifier"}
    not_paths = {"--trials-e", "--trials-h"}  # the same reader as --trials-o

    def walk(command: click.Command, path: list[str]):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, command

    covered = "\n".join(template for _, template in MISSING_INPUTS)
    for path, command in walk(cli, []):
        for param in command.params:
            if not isinstance(param.type, click.Path):
                continue
            flag = param.opts[0]
            if flag in outputs or flag in not_paths or param.name in outputs:
                continue
            words = " ".join(path)
            pattern = rf"^{re.escape(words)} .*{re.escape(flag)} {{M}}" if flag.startswith("--") else rf"^{words} "
            rows = [t for t in covered.splitlines() if re.search(pattern, t)]
            assert rows, f"{words} {flag} has no missing-input case"


def test_trials_from_a_missing_dash_is_one_line(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["score", "--trials", "-", f"scp:{corpus['scp']}", str(tmp_path / "out")],
        input=b"",
        catch_exceptions=False,
    )
    assert result.exit_code == 1 and "Traceback" not in result.stderr


# --- the machine refuses a write ------------------------------------------------------------------


def _limited(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_leaves_nothing(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "emb.scp").write_text("earlier\n")
    command = [*SPKVERIF, "extract", "-q", "--model", str(MODEL), f"scp:{corpus['data'] / 'wav.scp'}"]
    command.append(f"ark,scp:{out / 'emb.ark'},{out / 'emb.scp'}")
    result = subprocess.run(command, preexec_fn=_limited(100), capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"spkverif extract: error: {out / 'emb.ark'}: file too large"]
    assert sorted(p.name for p in out.iterdir()) == ["emb.scp"] and (out / "emb.scp").read_text() == "earlier\n"


def _read_only_mount(folder: Path) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    return made.returncode == 0


@pytest.fixture
def read_only(tmp_path: Path):
    folder = tmp_path / "ro"
    if not _read_only_mount(folder):
        folder.chmod(0o555)
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here (needs root and mount); a 0555 folder binds no root")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


@pytest.mark.slow
def test_every_stage_refuses_a_read_only_output_in_one_line(
    corpus: dict[str, Path], read_only: Path, tmp_path: Path
) -> None:
    d, t, s, sc = corpus["data"], corpus["trials"], corpus["scp"], corpus["scores"]
    cases = [
        ("score", ["score", "--trials", t, f"scp:{s}", read_only / "out"], read_only / "out"),
        ("extract", ["extract", "--model", MODEL, f"scp:{d}/wav.scp", f"ark:{read_only}/e.ark"], read_only / "e.ark"),
        ("report", ["report", "--trials", t, "--out-dir", read_only, "--no-det", sc], read_only),
        ("prepare", ["prepare", "dir", corpus["root"] / "audio", "--out", read_only / "x"], read_only / "x"),
        ("data", ["data", "fix", d, "--out", read_only / "x"], read_only / "x"),
        ("data", ["data", "copy", d, read_only / "x"], read_only / "x"),
        ("export", ["export", "--model", MODEL, read_only / "m.onnx"], read_only / "m.onnx"),
        ("verify", ["verify", "--model", MODEL, "--out", read_only / "v", corpus["wav"], corpus["wav2"]], None),
        ("train", ["train", "--data", d, "--exp", read_only / "exp", "--speakers-per-batch", "2"], read_only / "exp"),
    ]
    for stage, argv, named in cases:
        line = one_line_error(invoke(*argv, "-q"), stage)
        assert "read-only file system" in line or "permission denied" in line, line
        if named is not None:
            assert str(named) in line, line
    assert not list(read_only.iterdir())


def test_a_path_under_a_regular_file_is_one_line(corpus: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    line = one_line_error(invoke("score", "--trials", corpus["trials"], f"scp:{corpus['scp']}", blocker / "x"), "score")
    assert line == f"spkverif score: error: {blocker / 'x'}: not a directory"


def test_a_full_file_system_keeps_the_earlier_output(tmp_path: Path) -> None:
    target = tmp_path / "scores"
    target.write_text("earlier\n")

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(SpkverifError, match="no space left on device") as caught, atomic_write(target) as handle:
        Full(handle).write("x")
    assert caught.value.path == str(target)
    assert target.read_text() == "earlier\n" and sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


# --- odd audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e29])
def test_non_finite_audio_is_refused_with_its_time(tmp_path: Path, value: float) -> None:
    samples = np.random.default_rng(0).uniform(-0.3, 0.3, 32000).astype(np.float32)
    samples[24000] = value
    bad = tmp_path / "bad.wav"
    soundfile.write(bad, samples, 16000, subtype="FLOAT")
    good = write_wav(tmp_path / "good.wav", seconds=2.0)
    line = one_line_error(invoke("verify", "--model", MODEL, good, bad), "verify")
    assert "at 1.500 s" in line and "bad.wav" in line, line
    (tmp_path / "wav.scp").write_text(f"good {good}\nbad {bad}\n")
    out = tmp_path / "emb"
    line = one_line_error(
        invoke("extract", "--model", MODEL, f"scp:{tmp_path}/wav.scp", f"ark,scp:{out}.ark,{out}.scp"), "extract"
    )
    assert line.startswith(f"spkverif extract: error: {tmp_path}/wav.scp:2: recording 'bad' has ") and "1.500 s" in line
    assert not list(tmp_path.glob("emb*")) and not temporary_files(tmp_path)


def test_bad_sample_names_the_first_and_accepts_int16_scale() -> None:
    samples = np.zeros(16000, dtype=np.float32)
    assert bad_sample(samples, 16000) is None
    samples[100] = 32767.0  # float audio at int16 scale is still audio
    assert bad_sample(samples, 16000) is None
    samples[8000] = MAX_ABS_SAMPLE * 2
    samples[9000] = np.nan
    assert bad_sample(samples, 16000, start=16000) == (
        f"a sample of {MAX_ABS_SAMPLE * 2:g} at 1.500 s (audio must be finite, within ±{MAX_ABS_SAMPLE:g})"
    )


def test_a_chunk_read_names_the_time_in_its_utterance(tmp_path: Path) -> None:
    samples = np.zeros(32000, dtype=np.float32)
    samples[20000] = np.nan
    soundfile.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    reader = AudioReader({"a": str(tmp_path / "a.wav")})
    assert reader.read("a", 0, 16000).shape == (16000,)
    with pytest.raises(SpkverifError, match=r"recording 'a' has a NaN sample at 1\.250 s"):
        reader.read("a", 16000, 16000)


# --- advice that points somewhere --------------------------------------------------------------------


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("-")}


# The modules whose messages reach each command's user, read for the options they recommend.
MESSAGE_SOURCES = {
    "verify": ["stages/verify.py", "io/audio.py", "runtime/__init__.py", "runtime/base.py"],
    "extract": ["stages/extract.py", "io/audio.py", "runtime/__init__.py", "runtime/base.py"],
    "train": ["io/audio.py"],
    "shard": ["io/audio.py"],
}


def test_every_option_a_message_recommends_exists_on_the_commands_that_can_say_it() -> None:
    """Each `--option` in a message string is an option of every command the message can reach,
    unless the message names another command before it (`report --cohort`, `spkverif export --format`).
    io/audio.py's advice is the reader's `channel_advice`: only the commands with --channel pass
    OPTION_ADVICE, and the others' readers advise a pipe in wav.scp."""
    from spkverif.io import audio

    commands = set(cli.commands)
    for name, sources in MESSAGE_SOURCES.items():
        offered = _options(cli.commands[name])
        for source in sources:
            text = (ROOT / "spkverif" / source).read_text()
            if source == "io/audio.py" and name not in {"verify", "extract"}:
                text = text.replace(audio.OPTION_ADVICE, "")  # said only where channel_advice asks for it
            for string in re.findall(r'"[^"\n]*--[a-z][^"\n]*"', text):
                if string.startswith('"--'):
                    continue  # a message about the option the user gave, not advice
                for before, flag in re.findall(r"(\w*)\s*(?<![\w-])(--[a-z][a-z0-9-]*)", string):
                    owner = before if before in commands else name
                    assert flag in _options(cli.commands[owner]) or (owner != name and owner in commands), flag
                    if owner == name:
                        assert flag in offered, f"{source} tells `spkverif {name}` users of {flag}, which it lacks"


def test_stereo_advice_on_verify_names_an_option_verify_has(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "s.wav", rng.uniform(-0.3, 0.3, (32000, 2)).astype(np.float32), 16000)
    good = tmp_path / "g.wav"
    soundfile.write(good, rng.uniform(-0.3, 0.3, (32000, 2)).astype(np.float32), 16000)
    warned = invoke("verify", "--model", MODEL, good, tmp_path / "s.wav")
    assert warned.exit_code == 0 and "--channel" in warned.stderr
    chosen = invoke("verify", "--model", MODEL, "--channel", "1", good, tmp_path / "s.wav")
    assert chosen.exit_code == 0 and "--channel" not in chosen.stderr
    assert chosen.stdout.splitlines()[1].split()[2] != warned.stdout.splitlines()[1].split()[2]  # another channel


# --- recipes delete nothing without --overwrite -----------------------------------------------------


def test_recipes_remove_nothing_without_overwrite() -> None:
    for run in sorted(ROOT.glob("recipes/*/run.sh")):
        text = run.read_text()
        assert not re.search(r"^\s*rm -r", text, re.MULTILINE), f"{run}: removes a directory by itself"
        assert re.search(r"^overwrite=false", text, re.MULTILINE), f"{run}: no --overwrite option"
        for call in re.findall(r"spkverif train (?:\\\n|[^\n])*", text):
            assert "--resume" in call, f"{run}: a training that would refuse or restart: {call}"


def test_keep_or_clear_removes_only_with_overwrite_true(tmp_path: Path) -> None:
    exp = tmp_path / "exp" / "a"
    (exp / "models").mkdir(parents=True)
    (exp / "models" / "epoch_0001.pt").write_text("")
    script = f'. {ROOT}/bin/parse_options.sh "$@"; keep_or_clear {exp}'
    for overwrite, kept in (("false", True), ("true", False)):
        done = subprocess.run(["bash", "-c", f"overwrite=false; {script}", "x", "--overwrite", overwrite], check=False)
        assert done.returncode == 0 and (exp / "models" / "epoch_0001.pt").exists() is kept


# --- `-`, pipes and links, as Kaldi's tools take them ------------------------------------------------


def test_dash_and_process_substitution_read_and_write_in_place(corpus: dict[str, Path], tmp_path: Path) -> None:
    expected = corpus["scores"].read_text()
    trials, scp = corpus["trials"], corpus["scp"]
    piped = subprocess.run(
        ["bash", "-c", f"cat {trials} | {sys.executable} -m spkverif score -q --trials - scp:{scp} -"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert piped.returncode == 0 and piped.stdout == expected, piped.stderr
    substituted = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m spkverif score -q --trials <(cat {trials}) scp:<(cat {scp}) /dev/fd/3"
         f" 3>{tmp_path}/via_fd"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert substituted.returncode == 0 and (tmp_path / "via_fd").read_text() == expected, substituted.stderr
    fed = subprocess.run(
        [*SPKVERIF, "score", "-q", "--trials", str(trials), "scp:-", str(tmp_path / "from_stdin")],
        input=scp.read_text(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert fed.returncode == 0 and (tmp_path / "from_stdin").read_text() == expected, fed.stderr


def test_a_fifo_is_written_in_place_and_a_link_stays_a_link(corpus: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    assert invoke("score", "-q", "--trials", corpus["trials"], f"scp:{corpus['scp']}", fifo).exit_code == 0
    assert reader.communicate(timeout=60)[0] == corpus["scores"].read_text() and fifo.is_fifo()
    target = tmp_path / "real.cosine"
    target.write_text("earlier\n")
    (tmp_path / "link.cosine").symlink_to(target.name)
    assert (
        invoke("score", "-q", "--trials", corpus["trials"], f"scp:{corpus['scp']}", tmp_path / "link.cosine").exit_code
        == 0
    )
    assert (tmp_path / "link.cosine").is_symlink() and target.read_text() == corpus["scores"].read_text()


@pytest.mark.slow
def test_train_past_a_file_size_limit_keeps_its_last_checkpoint(corpus: dict[str, Path], tmp_path: Path) -> None:
    tiny = ["--model", "xvector", "--set", "model.channels=16", "--set", "model.stats_channels=32"]
    tiny += ["--set", "model.embedding_dim=8", "--speakers-per-batch", "2", "--utts-per-speaker", "2"]
    tiny += ["--chunk-seconds", "0.5", "--batches-per-epoch", "1", "--num-workers", "0", "-q"]
    exp = tmp_path / "exp"
    assert invoke("train", "--data", corpus["data"], "--exp", exp, "--epochs", "1", *tiny).exit_code == 0
    first = (exp / "models" / "epoch_0001.pt").read_bytes()
    assert len(first) > 60_000  # the limit below is smaller than a checkpoint
    command = [*SPKVERIF, "train", "--data", str(corpus["data"]), "--exp", str(exp), "--epochs", "2", "--resume", *tiny]
    result = subprocess.run(command, preexec_fn=_limited(60_000), capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"spkverif train: error: {exp / 'models' / 'epoch_0002.pt'}: file too large"
    ]
    assert sorted(p.name for p in (exp / "models").iterdir()) == ["epoch_0001.pt", "final.pt"]
    assert (exp / "models" / "epoch_0001.pt").read_bytes() == first and not temporary_files(tmp_path)


def test_prepare_and_validate_read_float_files_for_non_finite_samples(tmp_path: Path) -> None:
    """prepare and validate read headers only; a float file is also read whole, so NaN is named there too."""
    rng = np.random.default_rng(0)
    for speaker in ("s1", "s2"):
        for number in range(2):
            samples = rng.uniform(-0.3, 0.3, 16000).astype(np.float32)
            if (speaker, number) == ("s2", 1):
                samples[8000] = np.nan
            (tmp_path / "tree" / speaker).mkdir(parents=True, exist_ok=True)
            soundfile.write(tmp_path / "tree" / speaker / f"{speaker}-{number}.wav", samples, 16000, subtype="FLOAT")
    prepared = invoke("prepare", "dir", tmp_path / "tree", "--out", tmp_path / "data")
    assert prepared.exit_code == 0, prepared.stderr
    assert "s2-1.wav: holds a NaN sample at 0.500 s" in prepared.stderr
    assert "s2-1" not in (tmp_path / "data" / "wav.scp").read_text()
    (tmp_path / "data" / "wav.scp").write_text(
        (tmp_path / "data" / "wav.scp").read_text().replace(str(tmp_path / "tree" / "s2" / "s2-0.wav"),
                                                            str(tmp_path / "tree" / "s2" / "s2-1.wav"))
    )  # fmt: skip
    validated = invoke("validate", tmp_path / "data")
    assert validated.exit_code == 1 and "has a NaN sample at 0.500 s" in validated.stderr
