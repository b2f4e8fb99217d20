"""Decoding once: `prepare voxceleb2 --decode-to`, `data decode`, resuming, failures, a full disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from spkverif.io.datadir import load_data_dir, validate_data_dir
from spkverif.io.decoders import decode_ffmpeg, decode_pyav
from spkverif.stages.decode import DecodeOptions, finished_frames
from spkverif.stages.prepare.voxceleb import prepare_voxceleb2
from tests.fake_corpora import make_fake_voxceleb2, write_audio, write_m4a

REPO = Path(__file__).resolve().parents[1]


def _broken_first(fake) -> tuple[str, Path]:
    utt, path = next(iter(fake.files.items()))
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A not really")
    return utt, path


def test_pyav_decodes_alac_exactly_and_aac_like_ffmpeg(tmp_path: Path) -> None:
    """ALAC is lossless: PyAV must give back the source samples. For AAC both decoders use
    libavcodec, so they agree to one least significant bit (rounding of float to 16 bits)."""
    rng = np.random.default_rng(3)
    source = np.round(0.2 * rng.standard_normal(16000) * 32768).clip(-32768, 32767) / 32768
    np.testing.assert_array_equal(decode_pyav(str(write_m4a(tmp_path / "a.m4a", source, "alac"))), source * 32768)
    aac = write_m4a(tmp_path / "b.m4a", source, "aac")
    decoded = decode_pyav(str(aac)).astype(np.float64) / 32768
    aligned = decoded[: len(source)]
    assert 10 * np.log10(np.sum(source**2) / np.sum((aligned - source) ** 2)) > 10
    if shutil.which("ffmpeg") is not None:
        other = decode_ffmpeg(str(aac))
        assert other.shape == decoded.shape
        assert np.abs(other.astype(int) - decode_pyav(str(aac))).max() <= 1


def test_prepare_voxceleb2_decode_to_writes_decoded_files_and_lists_failures(tmp_path: Path) -> None:
    fake, sources = make_fake_voxceleb2(tmp_path / "vox2", speakers=2, videos=2, utts=2, codec="alac")
    broken_utt, broken_path = _broken_first(fake)
    audio = tmp_path / "audio"
    result = prepare_voxceleb2(fake.root, tmp_path / "data", decode_to=audio, decode=DecodeOptions(jobs=2))
    directory = tmp_path / "data" / "vox2_dev"
    assert validate_data_dir(directory) == []
    data = load_data_dir(directory)
    assert set(data.utterances) == set(fake.files) - {broken_utt}
    assert len(result.unreadable) == 1 and result.unreadable[0].startswith(f"{broken_path.resolve()}: ")
    note = (directory / "decode_failures").read_text().splitlines()
    assert note == result.unreadable
    for utt in data.utterances:
        path = Path(data.wav_scp[utt])
        assert path == audio.resolve() / data.utt2spk[utt] / f"{utt}.wav"
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000 and samples.ndim == 1
        np.testing.assert_array_equal(samples, sources[utt])
        assert data.utt2dur[utt] == pytest.approx(len(sources[utt]) / 16000, abs=1e-4)
    assert not list(audio.rglob("*.tmp"))


def test_decoding_resumes_skipping_finished_files_and_redoing_damaged_ones(tmp_path: Path) -> None:
    fake, sources = make_fake_voxceleb2(tmp_path / "vox2", speakers=2, videos=1, utts=3, codec="alac")
    audio, out = tmp_path / "audio", tmp_path / "data"
    for job in (1, 2):
        part = prepare_voxceleb2(fake.root, out, decode_to=audio, decode=DecodeOptions(jobs=1, part=(job, 3)))
        assert part.data == {}
    assert not (out / "vox2_dev").exists()
    decoded = sorted(audio.rglob("*.wav"))
    assert len(decoded) == 4  # parts 1 and 2 of 3: recordings 1, 2, 4, 5 of 6
    damaged = decoded[0]
    soundfile.write(damaged, np.zeros(100, dtype=np.int16), 16000)  # a file of the wrong length
    mtimes = {path: path.stat().st_mtime_ns for path in decoded[1:]}
    result = prepare_voxceleb2(fake.root, out, decode_to=audio, decode=DecodeOptions(jobs=2))
    assert len(result.data["vox2_dev"].utterances) == 6
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in mtimes.items())
    utt = damaged.stem
    np.testing.assert_array_equal(soundfile.read(damaged, dtype="float32")[0], sources[utt])
    assert finished_frames(str(damaged), str(fake.files[utt])) == len(sources[utt])


def test_data_decode_runs_pipes_and_keeps_segments(tmp_path: Path, run_cli) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "data"
    source.mkdir()
    recordings = {}
    for name in ("rec1", "rec2"):
        recordings[name] = (0.1 * rng.standard_normal(8000 * 3)).astype(np.float32)
        write_audio(tmp_path / f"{name}.wav", recordings[name], rate=8000)
    (source / "wav.scp").write_text(
        f"rec1 cat {tmp_path / 'rec1.wav'} |\nrec2 cat {tmp_path / 'rec2.wav'} |\nrec3 false |\n"
    )
    (source / "segments").write_text("a-1 rec1 0.0 1.5\na-2 rec1 1.5 -1\nb-1 rec2 0.5 2.0\nc-1 rec3 0 1\n")
    (source / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\nc-1 c\n")
    (source / "spk2utt").write_text("a a-1 a-2\nb b-1\nc c-1\n")
    result = run_cli("data", "decode", source, tmp_path / "out", "--audio-dir", tmp_path / "audio", "--format", "flac")
    assert result.exit_code == 0, result.output
    data = load_data_dir(tmp_path / "out")
    assert data.utterances == ["a-1", "a-2", "b-1"]
    assert data.utt2dur == pytest.approx({"a-1": 1.5, "a-2": 1.5, "b-1": 1.5})
    note = (tmp_path / "out" / "decode_failures").read_text()
    assert note.startswith("false |: ") and "command exited with status 1" in note
    samples, rate = soundfile.read(data.wav_scp["rec1"], dtype="float32")
    assert rate == 16000 and len(samples) == 3 * 16000 and data.wav_scp["rec1"].endswith(".flac")
    assert np.corrcoef(samples[::2][100:-100], recordings["rec1"][100:-100])[0, 1] > 0.95


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_disk_stops_with_one_line_and_a_second_run_resumes(tmp_path: Path, jobs: int) -> None:
    """A file-size limit (EFBIG, handled as a full disk) between the sizes of the decoded files
    lets the short ones through and stops the stage at the first long one."""
    for seed in range(10):  # a fake whose first recording (in id order) is not its longest
        fake, sources = make_fake_voxceleb2(
            tmp_path / f"vox2_{seed}", speakers=1, videos=1, utts=4, seconds=1.0, codec="alac", seed=seed
        )
        sizes = [2 * len(sources[utt]) + 44 for utt in sorted(sources)]
        if sizes[0] < max(sizes):
            break
    limit = sizes[0] + 1
    audio, out = tmp_path / "audio", tmp_path / "data"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from spkverif.cli import main\n"
        f"sys.argv = ['spkverif', 'prepare', 'voxceleb2', {str(fake.root)!r}, '--out', {str(out)!r},"
        f" '--decode-to', {str(audio)!r}, '--jobs', '{jobs}', '-q']\n"
        "main()\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spkverif prepare: error: out of space (")
    names = [path.name for path in audio.rglob("*") if path.is_file()]
    assert all(name.endswith(".wav") for name in names) and (names or jobs > 1)  # no temporary file left
    for path in audio.rglob("*.wav"):
        assert finished_frames(str(path), str(fake.files[path.stem])) is not None
    assert not (out / "vox2_dev").exists()
    done = len(names)
    result = prepare_voxceleb2(fake.root, out, decode_to=audio, decode=DecodeOptions(jobs=1))
    assert len(result.data["vox2_dev"].utterances) == 4 and done < 4
