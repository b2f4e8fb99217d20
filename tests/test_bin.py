"""The shell helpers in bin/: the launchers pass every word on whole (quoted alike, chains
written explicitly), and subset_per_speaker.sh keeps `segments`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spkverif.io.datadir import load_data_dir, validate_data_dir
from tests.conftest import write_data_dir, write_wav
from tests.test_voxceleb_recipe import _install_stubs

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin"
# Words a shell would split, unquote, expand or run: each must reach the job as it is.
AWKWARD = ["two words", "it's", 'say "hi"', "$HOME", "${x:-y}", "$(echo no)", "a;b", "&&", "|", "*", "back\\slash", ""]

ARGV_PRINTER = f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n"


def _tools(directory: Path, names: tuple[str, ...]) -> Path:
    """Executables NAME in DIRECTORY that print their arguments as one JSON list."""
    directory.mkdir(exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(ARGV_PRINTER)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def _launch(script: str, *args: str, path: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAUNCH_BACKEND": "local", **variables}
    env["PATH"] = os.pathsep.join([str(p) for p in (path, Path(sys.executable).parent) if p] + [env["PATH"]])
    return subprocess.run(["bash", str(BIN / script), *args], capture_output=True, text=True, env=env, timeout=300)


def _printed(log: Path) -> list[list[str]]:
    """The JSON argument lists a job printed into LOG (the launcher's `# ...` lines skipped)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("[")]


def test_launch_passes_every_word_whole(tmp_path: Path) -> None:
    tools = _tools(tmp_path / "tools", ("argv",))
    done = _launch("launch.sh", str(tmp_path / "log" / "one.log"), "argv", *AWKWARD, path=tools)
    assert done.returncode == 0, done.stderr
    assert _printed(tmp_path / "log" / "one.log") == [AWKWARD]


def test_launch_array_replaces_job_in_every_word(tmp_path: Path) -> None:
    tools = _tools(tmp_path / "tools", ("argv",))
    done = _launch("launch.sh", "JOB=1:3", str(tmp_path / "x.JOB.log"), "argv", "part JOB/3", "it's JOB", *AWKWARD,
                   path=tools)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for job in (1, 2, 3):
        assert _printed(tmp_path / f"x.{job}.log") == [[f"part {job}/3", f"it's {job}", *AWKWARD]]


def test_launch_runs_a_chain_only_when_written_as_a_script(tmp_path: Path) -> None:
    tools = _tools(tmp_path / "tools", ("argv",))
    # `&&` as a word is a word: one command, not two
    assert _launch("launch.sh", str(tmp_path / "word.log"), "argv", "a", "&&", "argv", "b", path=tools).returncode == 0
    assert _printed(tmp_path / "word.log") == [["a", "&&", "argv", "b"]]
    # the chain as an explicit script, its inputs after it; JOB reaches the script's words
    done = _launch("launch.sh", "JOB=1:2", str(tmp_path / "chain.JOB.log"), "bash", "-c",
                   'argv first "$1" "$2" && argv second "$2"', "chain", "a 'b' $c", "JOB", path=tools)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for job in (1, 2):
        assert _printed(tmp_path / f"chain.{job}.log") == [["first", "a 'b' $c", str(job)], ["second", str(job)]]
    # a failing first command stops the chain and fails the job, naming its log
    failed = _launch("launch.sh", str(tmp_path / "fail.log"), "bash", "-c", 'false && argv "$1"', "chain", "x",
                     path=tools)  # fmt: skip
    assert failed.returncode == 1 and f"see {tmp_path / 'fail.log'}" in failed.stderr
    assert _printed(tmp_path / "fail.log") == []


def test_voxceleb_gpu_choice_script_picks_a_gpu_per_job(tmp_path: Path) -> None:
    # recipes/voxceleb/run.sh stage 3 (local, with GPUs) puts this script before the command
    recipe = (REPO / "recipes" / "voxceleb" / "run.sh").read_text()
    script = 'CUDA_VISIBLE_DEVICES=$(( ($1 - 1) % $2 )) exec "${@:3}"'
    assert f"on_gpu=(bash -c '{script}' on_gpu JOB \"$gpus\")" in recipe
    done = _launch("launch.sh", "JOB=1:3", str(tmp_path / "gpu.JOB.log"), "bash", "-c", script, "on_gpu", "JOB", "2",
                   "printenv", "CUDA_VISIBLE_DEVICES")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / f"gpu.{job}.log").read_text().splitlines()[2] for job in (1, 2, 3)] == ["0", "1", "0"]


def test_launch_through_slurm_and_grid_engine_passes_every_word_whole(tmp_path: Path) -> None:
    tools = _install_stubs(_tools(tmp_path / "tools", ("argv",)))
    for backend in ("slurm", "sge"):
        log = tmp_path / backend / "x.JOB.log"
        done = _launch("launch.sh", "--backend", backend, "JOB=1:2", str(log), "argv", "part JOB", *AWKWARD,
                       path=tools, STUB_LOG=str(tmp_path / "stub.log"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        for job in (1, 2):
            assert _printed(tmp_path / backend / f"x.{job}.log") == [[f"part {job}", *AWKWARD]], backend


@pytest.mark.parametrize("gpus", ["0", "2"])
def test_launch_distributed_passes_every_word_whole(tmp_path: Path, gpus: str) -> None:
    tools = _tools(tmp_path / "tools", ("spkverif", "torchrun"))
    log = tmp_path / "train.log"
    done = _launch("launch_distributed.sh", "--gpus", gpus, str(log), "spkverif", "train", *AWKWARD, path=tools)
    assert done.returncode == 0, done.stderr
    (printed,) = _printed(log)
    prefix = [] if gpus == "0" else ["--standalone", "--nproc_per_node", "2", str(tools / "spkverif")]
    assert printed == [*prefix, "train", *AWKWARD]


def _speakers_data(tmp_path: Path, segmented: bool) -> Path:
    """3 speakers x 3 utterances; with segments, each speaker's utterances cut from one recording."""
    data = tmp_path / ("segmented" if segmented else "plain")
    utt2spk = {f"s{s}-u{u}": f"s{s}" for s in range(3) for u in range(3)}
    if not segmented:
        files = {utt: str(write_wav(tmp_path / "audio" / f"{utt}.wav", 1.0, seed=i)) for i, utt in enumerate(utt2spk)}
        write_data_dir(data, files, utt2spk)
        (data / "utt2dur").write_text("".join(f"{utt} 1.00\n" for utt in sorted(utt2spk)))
        return data
    files = {f"s{s}-rec": str(write_wav(tmp_path / "audio" / f"s{s}.wav", 3.0, seed=s)) for s in range(3)}
    write_data_dir(data, files, utt2spk)
    (data / "segments").write_text("".join(f"s{s}-u{u} s{s}-rec {u}.0 {u + 1}.0\n" for s in range(3) for u in range(3)))
    return data


@pytest.mark.parametrize("segmented", [False, True], ids=["plain", "segments"])
def test_subset_per_speaker_keeps_the_first_k_with_their_segments(tmp_path: Path, segmented: bool) -> None:
    data = _speakers_data(tmp_path, segmented)
    out = tmp_path / "cohort"
    done = _launch("subset_per_speaker.sh", str(data), "2", str(out), path=BIN)
    assert done.returncode == 0, done.stderr
    kept = [f"s{s}-u{u}" for s in range(3) for u in range(2)]
    subset = load_data_dir(out)
    assert list(subset.utt2spk) == kept and validate_data_dir(out) == []
    assert (out / "spk2utt").read_text() == "".join(f"s{s} s{s}-u0 s{s}-u1\n" for s in range(3))
    if segmented:
        assert (out / "segments").read_text() == "".join(f"s{s}-u{u} s{s}-rec {u}.0 {u + 1}.0\n" for s in range(3)
                                                         for u in range(2))  # fmt: skip
        assert sorted(subset.wav_scp) == ["s0-rec", "s1-rec", "s2-rec"]
    else:
        assert not (out / "segments").exists() and sorted(subset.wav_scp) == kept
        assert (out / "utt2dur").read_text() == "".join(f"{utt} 1.00\n" for utt in kept)


def test_subset_per_speaker_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    assert _launch("subset_per_speaker.sh", str(tmp_path), "2", path=BIN).returncode == 1
    done = _launch("subset_per_speaker.sh", str(tmp_path / "absent"), "2", str(tmp_path / "out"), path=BIN)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"spkverif data: error: {tmp_path / 'absent'}: ")


@pytest.mark.slow
def test_calibrate_folds_splits_by_enrolment_speaker_and_summarises(tmp_path: Path) -> None:
    import kaldiio
    import torch

    from spkverif.models import build_model
    from spkverif.runtime import open_models
    from spkverif.training.checkpoint import model_payload, save_atomic

    rng = np.random.default_rng(0)
    speakers = [f"spk{index}" for index in range(8)]
    centres = {speaker: rng.normal(size=8) for speaker in speakers}
    utt2spk = {f"{speaker}-u{number}": speaker for speaker in speakers for number in range(5)}
    vectors = {utt: centres[speaker] + 0.8 * rng.normal(size=8) for utt, speaker in utt2spk.items()}
    data = tmp_path / "test"
    write_data_dir(data, {utt: "/dev/null" for utt in utt2spk}, utt2spk)
    (data / "utt2dur").write_text("".join(f"{utt} {rng.uniform(1, 10):.2f}\n" for utt in sorted(utt2spk)))
    utts = sorted(utt2spk)
    pairs = [(a, b) for i, a in enumerate(utts) for b in utts[i + 1 :]]
    (data / "trials").write_text(
        "".join(f"{a} {b} {'target' if utt2spk[a] == utt2spk[b] else 'nontarget'}\n" for a, b in pairs)
    )
    unit = {utt: vector / np.linalg.norm(vector) for utt, vector in vectors.items()}
    (tmp_path / "scores").write_text("".join(f"{a} {b} {unit[a] @ unit[b]:.6f}\n" for a, b in pairs))
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'emb.ark'},{tmp_path / 'emb.scp'}") as writer:
        for utt in utts:
            writer(utt, vectors[utt].astype(np.float32))
    torch.manual_seed(0)
    network = build_model("xvector", {"channels": 16, "stats_channels": 32, "embedding_dim": 8})
    save_atomic(model_payload(network), tmp_path / "final.pt")
    save_atomic(model_payload(build_model("xvector", {"channels": 16, "stats_channels": 32})), tmp_path / "second.pt")
    ensemble = [tmp_path / "final.pt", tmp_path / "second.pt"]  # MODEL: an ensemble's files joined by commas
    out = tmp_path / "calibration"
    done = _launch("calibrate_folds.sh", "--cohort", f"scp:{tmp_path / 'emb.scp'}", "--top-n", "5", str(data),
                   str(tmp_path / "scores"), f"scp:{tmp_path / 'emb.scp'}", ",".join(map(str, ensemble)), str(out),
                   path=BIN)  # fmt: skip
    assert done.returncode == 0, done.stderr
    folds = dict(line.split() for line in (out / "spk2fold").read_text().splitlines())
    assert sorted(folds) == speakers and sorted(folds.values()).count("0") == 4
    for fold in "01":
        enrolled = {utt2spk[line.split()[0]] for line in (out / f"trials.{fold}").read_text().splitlines()}
        assert enrolled and all(folds[speaker] == fold for speaker in enrolled)
    lines = (out / "trials.0").read_text().splitlines() + (out / "trials.1").read_text().splitlines()
    assert sorted(lines) == sorted((data / "trials").read_text().splitlines())
    summary = (out / "summary.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in summary[2:]] == ["| raw scores", "| linear", "| qmf", "| qmf_cohort"]
    for method in ("linear", "qmf", "qmf_cohort"):
        for fold in "01":
            saved = json.loads((out / f"{method}.{fold}" / "calibration.json").read_text())
            assert saved["fingerprint"] == open_models(ensemble).fingerprint
    means = {row.split(" | ")[0][2:]: [float(cell) for cell in row.strip(" |").split(" | ")[1:]] for row in summary[2:]}
    reports = [json.loads((out / f"qmf.{fold}" / "report.json").read_text())[0] for fold in "01"]
    assert means["qmf"][2] == pytest.approx((reports[0]["cllr"] + reports[1]["cllr"]) / 2, abs=1e-3)
    assert means["raw scores"][:2] == [1.0, 1.0]
