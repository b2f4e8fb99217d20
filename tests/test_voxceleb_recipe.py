"""The VoxCeleb recipe end to end on fake corpora with the real layouts, locally and
through stub Slurm and Grid Engine launchers that record their command lines."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from spkverif.config import load_train_config
from spkverif.losses import build_loss
from spkverif.models import build_model, count_parameters
from tests.fake_corpora import make_fake_musan, make_fake_rirs, make_fake_voxceleb1, make_fake_voxceleb2

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "voxceleb" / "run.sh"

TINY_CONF = """seed: 0
data: {{chunk_seconds: 0.5}}
training: {{epochs: 1, batches_per_epoch: 3, speakers_per_batch: 4, log_every: 1}}
augment: {{noise: {data}, noise_prob: 0.5, rir: {data}/rirs, rir_prob: 0.5}}
model: {{name: xvector, channels: 32, stats_channels: 64, embedding_dim: 16}}
loss: {{name: aam}}
optimizer: {{name: sgd, lr: 0.01}}
"""

STUBS = {
    "sbatch": r"""
echo "sbatch $*" >> "$STUB_LOG"
array=0-0; output=/dev/null; wrap=""
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array="${1#--array=}" ;;
    --output=*) output="${1#--output=}" ;;
    --wrap) wrap="$2"; shift ;;
  esac
  shift
done
for ((task = ${array%-*}; task <= ${array#*-}; task++)); do
  SLURM_ARRAY_TASK_ID=$task bash -c "$wrap" > "${output//%a/$task}" 2>&1 || exit 1
done
echo 4242
""",
    "srun": r"""
echo "srun $*" >> "$STUB_LOG"
output=/dev/null
while [ $# -gt 0 ] && [ "$1" != bash ]; do
  case "$1" in --output) output="$2"; shift ;; esac
  shift
done
SLURM_JOB_ID=4242 SLURM_JOB_NODELIST=localhost "$@" > "$output" 2>&1
""",
    "scontrol": "echo localhost\n",
    "qsub": r"""
echo "qsub $*" >> "$STUB_LOG"
tasks=1-1; output=/dev/null
while [ $# -gt 0 ]; do
  case "$1" in
    -cwd|-V) shift ;;
    -t) tasks="$2"; shift 2 ;;
    -o) output="$2"; shift 2 ;;
    -pe) shift 3 ;;
    -*) shift 2 ;;
    *) break ;;
  esac
done
for ((task = ${tasks%-*}; task <= ${tasks#*-}; task++)); do
  SGE_TASK_ID=$task "$@" > "${output//\$TASK_ID/$task}" 2>&1 || exit 1
done
""",
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    vox1 = make_fake_voxceleb1(
        root / "VoxCeleb1", dev_speakers=2, test_speakers=4, videos=2, utts=2, seconds=1.0, trials=24
    )
    vox2, _ = make_fake_voxceleb2(root / "VoxCeleb2", speakers=6, videos=2, utts=2, seconds=1.0, audio_ext="wav")
    musan = make_fake_musan(root / "musan")
    rirs = make_fake_rirs(root / "rirs_download")
    return {"voxceleb1": vox1.root, "voxceleb2": vox2.root, "musan": musan.root, "rirs": rirs.root}


def _environment(extra_path: Path | None = None, **variables: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join(
        [str(p) for p in (extra_path, Path(sys.executable).parent) if p is not None] + [env["PATH"]]
    )
    env.update(variables)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(RECIPE), *args], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def local_run(corpora: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    work = tmp_path_factory.mktemp("voxceleb")
    (work / "conf").mkdir()
    (work / "conf" / "tiny.yaml").write_text(TINY_CONF.format(data=work / "data"))
    common = [
        "--data", str(work / "data"), "--conf", str(work / "conf"), "--experiments", "tiny",
        "--gpus", "0", "--nj", "2", "--cohort-utts", "2", "--top-n", "3",
    ]  # fmt: skip
    args = [*common, "--exp", str(work / "exp"), "--audio-ext", "wav"]
    for name, path in corpora.items():
        args += [f"--{name}", str(path)]
    result = _run(args, _environment())
    (work / "stdout.txt").write_text(result.stdout)
    return work, common


@pytest.mark.slow
def test_local_run_prints_every_stage_and_reports_every_list(local_run) -> None:
    work, _ = local_run
    stdout = (work / "stdout.txt").read_text()
    for stage in range(1, 6):
        assert f"stage {stage}:" in stdout
    for name in ("vox1_dev", "vox1_test", "vox1", "vox2_dev", "musan_noise", "rirs", "cohort"):
        assert (work / "data" / name / "wav.scp").is_file(), name
    for trial_list in ("O", "E", "H"):
        assert (work / "data" / "vox1" / f"trials_{trial_list}").is_file()
    rows = json.loads((work / "exp" / "report" / "report.json").read_text())
    systems = sorted(row["system"] for row in rows)
    assert systems == sorted(f"tiny vox1-{x} {m}" for x in "OEH" for m in ("cosine", "asnorm"))
    assert all(0.0 <= row["eer"] <= 1.0 and row["trials"] > 0 for row in rows)
    assert (work / "exp" / "report" / "det.png").is_file()
    assert (work / "exp" / "tiny" / "training.png").is_file()
    embeddings = work / "exp" / "tiny" / "embeddings"
    vox1_utts = (work / "data" / "vox1" / "utt2spk").read_text().split()[::2]
    assert (embeddings / "vox1.scp").read_text().split()[::2] == vox1_utts
    assert len(list((work / "exp" / "tiny" / "log").glob("extract_vox1.*.log"))) == 2
    decoded = work / "data" / "vox2_audio"
    wav_scp = (work / "data" / "vox2_dev" / "wav.scp").read_text().splitlines()
    assert len(wav_scp) == 24 and all(line.split()[1].startswith(str(decoded.resolve())) for line in wav_scp)
    assert sorted(p.name for p in (work / "data" / "log").glob("decode_vox2.*.log")) == [
        "decode_vox2.1.log",
        "decode_vox2.2.log",
    ]


def _install_stubs(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        path = directory / name
        path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.mark.slow
def test_slurm_and_grid_engine_paths_launch_through_the_schedulers(local_run, tmp_path: Path) -> None:
    work, common = local_run
    stubs = _install_stubs(tmp_path / "stubs")
    log = tmp_path / "launches.txt"
    exp = tmp_path / "exp_slurm"
    env = _environment(stubs, LAUNCH_BACKEND="slurm", STUB_LOG=str(log))
    _run([*common, "--exp", str(exp), "--stage", "2"], env)
    launches = log.read_text().splitlines()
    srun = [line for line in launches if line.startswith("srun ")]
    sbatch = [line for line in launches if line.startswith("sbatch ")]
    assert len(srun) == 1 and "--nodes 1 --ntasks-per-node 1" in srun[0] and "--partition=gpu" in srun[0]
    assert "spkverif train" in srun[0] or "spkverif" in srun[0]
    extract = [line for line in sbatch if "--array=1-2" in line]
    assert len(extract) == 2 and all(
        "--gres=gpu:1" in line and "extract_" in line and ".%a.log" in line for line in extract
    )
    assert all("$SLURM_ARRAY_TASK_ID" in line for line in extract)
    assert len([line for line in sbatch if "score_" in line]) == 3
    for scores in (work / "exp" / "tiny" / "scores").iterdir():
        assert (exp / "tiny" / "scores" / scores.name).read_text() == scores.read_text(), scores.name

    env = _environment(stubs, LAUNCH_BACKEND="sge", STUB_LOG=str(log))
    before = len(log.read_text().splitlines())
    _run([*common, "--exp", str(exp), "--stage", "3", "--stop-stage", "3"], env)
    qsub = log.read_text().splitlines()[before:]
    assert len(qsub) == 2 and all(line.startswith("qsub -sync y") and "-t 1-2" in line for line in qsub)
    assert all("$SGE_TASK_ID" in line and "gpu.q" in line for line in qsub)
    assert (exp / "tiny" / "embeddings" / "vox1.scp").read_text() == (
        work / "exp" / "tiny" / "embeddings" / "vox1.scp"
    ).read_text().replace(str(work / "exp"), str(exp))


@pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed: m4a VoxCeleb2 cannot be made or decoded here"
)
def test_m4a_voxceleb2_decodes_through_ffmpeg_pipes(corpora: dict[str, Path], tmp_path: Path) -> None:
    vox2, _ = make_fake_voxceleb2(tmp_path / "VoxCeleb2", speakers=4, videos=1, utts=2, seconds=1.0, audio_ext="m4a")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "tiny.yaml").write_text(TINY_CONF.format(data=tmp_path / "data"))
    args = ["--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"), "--conf", str(tmp_path / "conf"),
            "--experiments", "tiny", "--gpus", "0", "--nj", "1", "--cohort-utts", "1", "--stop-stage", "2",
            "--voxceleb2", str(vox2.root)]  # fmt: skip
    for name in ("voxceleb1", "musan", "rirs"):
        args += [f"--{name}", str(corpora[name])]
    _run([*args, "--pipes", "true"], _environment())
    assert all(
        line.rstrip().endswith("|") for line in (tmp_path / "data" / "vox2_dev" / "wav.scp").read_text().splitlines()
    )
    assert (tmp_path / "exp" / "tiny" / "models" / "final.pt").is_file()


@pytest.mark.slow
def test_m4a_voxceleb2_is_decoded_once_by_default(corpora: dict[str, Path], tmp_path: Path) -> None:
    """Stage 1 decodes the m4a files in --nj jobs (PyAV: no ffmpeg needed); wav.scp names the files."""
    vox2, sources = make_fake_voxceleb2(tmp_path / "VoxCeleb2", speakers=3, videos=1, utts=2, codec="alac")
    args = ["--data", str(tmp_path / "data"), "--nj", "2", "--cohort-utts", "1", "--stop-stage", "1",
            "--voxceleb2", str(vox2.root), "--decode-to", str(tmp_path / "decoded")]  # fmt: skip
    for name in ("voxceleb1", "musan", "rirs"):
        args += [f"--{name}", str(corpora[name])]
    _run(args, _environment())
    wav_scp = dict(line.split() for line in (tmp_path / "data" / "vox2_dev" / "wav.scp").read_text().splitlines())
    assert sorted(wav_scp) == sorted(sources)
    for utt, path in wav_scp.items():
        assert path == str((tmp_path / "decoded").resolve() / utt[:7] / f"{utt}.wav")
        assert soundfile.read(path, dtype="float32")[0].tolist() == sources[utt].tolist()


@pytest.mark.parametrize("conf", sorted((REPO / "recipes" / "voxceleb" / "conf").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_config_builds(conf: Path) -> None:
    config = load_train_config(conf)
    model = build_model(config.model.name, config.model.options, vars(config.frontend), config.data.sample_rate)
    build_loss(config.loss.name, model.embedding_dim, 5994, config.loss.options)
    assert count_parameters(model) > 1_000_000
    assert config.augment.noise.startswith("data")
