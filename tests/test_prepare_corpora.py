"""prepare voxceleb1 / voxceleb2 / musan / rirs on fake trees with the real layouts (tests/fake_corpora.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import load_data_dir, validate_data_dir
from spkverif.io.mp4 import mp4_audio_duration
from spkverif.io.trials import read_trials
from spkverif.stages.prepare.musan import prepare_musan
from spkverif.stages.prepare.rirs import prepare_rirs
from spkverif.stages.prepare.voxceleb import prepare_voxceleb1, prepare_voxceleb2
from tests.fake_corpora import make_fake_musan, make_fake_rirs, make_fake_voxceleb1, make_fake_voxceleb2

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed: m4a files cannot be made or decoded here"
)


def _official_to_id(path: str) -> str:
    """Independent of the code under test: `idX/video/NNNNN.wav` -> `idX-video-NNNNN`."""
    speaker, video, clip = Path(path).with_suffix("").parts
    return f"{speaker}-{video}-{clip}"


def _official_rows(path: Path) -> list[tuple[str, str, bool]]:
    rows = []
    for line in path.read_text().splitlines():
        label, enroll, test = line.split()
        rows.append((_official_to_id(enroll), _official_to_id(test), label == "1"))
    return rows


def _kaldi_rows(path: Path) -> list[tuple[str, str, bool]]:
    trials = read_trials(path)
    return list(zip(trials.enroll.tolist(), trials.test.tolist(), trials.labels.tolist(), strict=True))


def _assert_valid_and_sorted(directory: Path) -> None:
    assert validate_data_dir(directory, check_audio_files=True) == []
    for name in ("wav.scp", "utt2spk", "utt2dur"):
        keys = [line.split()[0] for line in (directory / name).read_text().splitlines()]
        assert keys == sorted(keys, key=str.encode), name


def _seconds(path: Path) -> float:
    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def test_voxceleb1_sets_ids_durations_and_trial_lists(tmp_path: Path) -> None:
    fake = make_fake_voxceleb1(tmp_path / "VoxCeleb1", dev_speakers=3, test_speakers=2, videos=2, utts=2)
    result = prepare_voxceleb1(fake.root, tmp_path / "data", jobs=2)
    assert "id10270-5r0dWxy17C8-00001" in fake.files
    expected_sets = {
        "vox1_dev": {u for u, s in fake.speakers.items() if s not in fake.test_speakers},
        "vox1_test": {u for u, s in fake.speakers.items() if s in fake.test_speakers},
        "vox1": set(fake.files),
    }
    for name, utts in expected_sets.items():
        directory = tmp_path / "data" / name
        _assert_valid_and_sorted(directory)
        data = load_data_dir(directory)
        assert set(data.utterances) == utts
        assert all(utt.startswith(f"{data.utt2spk[utt]}-") for utt in data.utterances)
        for utt in utts:
            assert Path(data.wav_scp[utt]) == fake.files[utt].resolve()
            assert data.utt2dur[utt] == pytest.approx(_seconds(fake.files[utt]), abs=1e-4)
    assert sorted(load_data_dir(tmp_path / "data" / "vox1_test").speakers) == ["id10270", "id10271"]
    for name in ("O", "E", "H"):
        assert _kaldi_rows(tmp_path / "data" / "vox1" / f"trials_{name}") == _official_rows(fake.trial_lists[name])
        assert result.trials[f"vox1_{name}"].written == result.trials[f"vox1_{name}"].lines
    assert _kaldi_rows(tmp_path / "data" / "vox1_test" / "trials") == _official_rows(fake.trial_lists["O"])


def test_voxceleb1_lists_missing_and_unreadable_files_and_goes_on(tmp_path: Path, run_cli) -> None:
    fake = make_fake_voxceleb1(tmp_path / "vox1", dev_speakers=2, test_speakers=2, videos=2, utts=2, trials=24)
    named = _official_rows(fake.trial_lists["O"])
    gone, broken = named[0][0], named[1][1]
    fake.files[gone].unlink()
    fake.files[broken].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with open(fake.trial_lists["O"], "a") as handle:
        handle.write("0 id10270/AAAAAAAAAAA/00009.wav id10271/BBBBBBBBBBB/00009.wav\n")
    result = run_cli("prepare", "voxceleb1", fake.root, "--out", tmp_path / "data", "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    assert "unreadable" in result.stderr and str(fake.files[broken]) in result.stderr
    assert gone in result.stderr and "id10270-AAAAAAAAAAA-00009" in result.stderr
    assert "vox1_O" in result.stdout and "missing files" in result.stdout
    data = load_data_dir(tmp_path / "data" / "vox1")
    assert gone not in data.utt2spk and broken not in data.utt2spk
    assert len(data.utterances) == len(fake.files) - 2
    kept = _kaldi_rows(tmp_path / "data" / "vox1_test" / "trials")
    expected = [
        row for row in _official_rows(fake.trial_lists["O"]) if row[0] in data.utt2spk and row[1] in data.utt2spk
    ]
    assert kept == expected and len(kept) < len(named) + 1
    _assert_valid_and_sorted(tmp_path / "data" / "vox1_test")


def test_voxceleb1_kaldi_layout_meta_split_and_genders(tmp_path: Path) -> None:
    """ROOT/dev/wav + ROOT/test/wav (the layout Kaldi's make_voxceleb1_v2.pl expects), vox1_meta.csv given."""
    fake = make_fake_voxceleb1(tmp_path / "flat", dev_speakers=2, test_speakers=1, videos=1, utts=2, meta=True)
    root = tmp_path / "vox1"
    for speaker in sorted(set(fake.speakers.values())):
        part = "test" if speaker in fake.test_speakers else "dev"
        (root / part / "wav").mkdir(parents=True, exist_ok=True)
        shutil.move(fake.root / "wav" / speaker, root / part / "wav" / speaker)
    meta = (
        (fake.root / "vox1_meta.csv")
        .read_text()
        .replace("id10002\tPerson_id10002\tf\tNowhere\tdev", "id10002\tPerson_id10002\tf\tNowhere\ttest")
    )
    (tmp_path / "meta.tsv").write_text(meta)
    prepare_voxceleb1(root, tmp_path / "data", trials_dir=fake.root, meta=tmp_path / "meta.tsv")
    assert sorted(load_data_dir(tmp_path / "data" / "vox1_test").speakers) == ["id10002", "id10270"]
    assert load_data_dir(tmp_path / "data" / "vox1_dev").speakers == ["id10001"]
    genders = dict(line.split() for line in (tmp_path / "data" / "vox1" / "spk2gender").read_text().splitlines())
    assert genders == {"id10001": "m", "id10002": "f", "id10270": "m"}
    assert len(load_data_dir(tmp_path / "data" / "vox1").utterances) == len(fake.files)


def test_voxceleb1_trial_list_errors_name_file_and_line(tmp_path: Path, run_cli) -> None:
    fake = make_fake_voxceleb1(tmp_path / "vox1", dev_speakers=1, test_speakers=2, videos=1, utts=2, trials=6)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav\n1 only-two-fields\n")
    result = run_cli("prepare", "voxceleb1", fake.root, "--out", tmp_path / "data", "--trials-o", bad)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"spkverif prepare: error: {bad}:2:")
    result = run_cli("prepare", "voxceleb1", fake.root, "--out", tmp_path / "data", "--trials-e", tmp_path / "nope")
    assert result.exit_code == 1 and "VoxCeleb1-E trial list not found" in result.stderr


def test_voxceleb2_converted_wav_layout(tmp_path: Path) -> None:
    fake, _ = make_fake_voxceleb2(tmp_path / "vox2", speakers=2, videos=2, utts=1, audio_ext="wav")
    prepare_voxceleb2(fake.root, tmp_path / "data", audio_ext="wav")
    _assert_valid_and_sorted(tmp_path / "data" / "vox2_dev")
    data = load_data_dir(tmp_path / "data" / "vox2_dev")
    assert set(data.utterances) == set(fake.files) and sorted(data.speakers) == ["id00012", "id00049"]
    assert all(Path(data.wav_scp[u]) == p.resolve() for u, p in fake.files.items())
    with pytest.raises(SpkverifError, match="no idNNNNN speaker directories"):
        prepare_voxceleb2(fake.root, tmp_path / "data", subset="test", audio_ext="wav")


@needs_ffmpeg
def test_voxceleb2_m4a_pipes_decode_to_the_source(tmp_path: Path) -> None:
    """ALAC in m4a is lossless: the ffmpeg pipe must give back the source samples exactly. AAC (what
    VoxCeleb2 ships) is lossy: the decode must line up with the source (no priming delay) at a
    high SNR. utt2dur comes from the MP4 header, without decoding, and must match the source length."""
    for codec, minimum_snr in (("alac", None), ("aac", 15.0)):
        fake, sources = make_fake_voxceleb2(tmp_path / codec, speakers=2, videos=1, utts=2, codec=codec)
        broken = next(iter(fake.files.values()))
        broken.write_bytes(b"\x00\x00\x00\x18ftypM4A not really")
        prepare_voxceleb2(fake.root, tmp_path / codec / "data", jobs=2)
        directory = tmp_path / codec / "data" / "vox2_dev"
        _assert_valid_and_sorted(directory)
        data = load_data_dir(directory)
        assert set(data.utterances) == set(fake.files) - {next(iter(fake.files))}
        assert all(data.wav_scp[utt].endswith("|") for utt in data.utterances)
        reader = AudioReader.from_data_dir(data)
        for utt in data.utterances:
            decoded, source = reader.read(utt), sources[utt]
            assert data.utt2dur[utt] == pytest.approx(len(source) / 16000, abs=1e-4)
            if minimum_snr is None:
                np.testing.assert_array_equal(decoded, source)
            else:
                aligned = decoded[: len(source)]
                snr = 10 * np.log10(np.sum(source**2) / np.sum((aligned - source) ** 2))
                assert len(decoded) >= len(source) and snr > minimum_snr


@needs_ffmpeg
def test_mp4_duration_from_the_header(tmp_path: Path) -> None:
    samples = np.random.default_rng(0).uniform(-0.3, 0.3, 22050 * 2 + 7).astype(np.float32)
    soundfile.write(tmp_path / "x.wav", samples, 22050, subtype="PCM_16")
    for codec in ("aac", "alac"):
        for flags in ([], ["-movflags", "+faststart"]):
            target = tmp_path / f"x_{codec}{len(flags)}.m4a"
            command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "x.wav"), "-c:a", codec]
            subprocess.run([*command, *flags, str(target)], check=True)
            assert mp4_audio_duration(target) == pytest.approx(len(samples) / 22050, abs=1e-6)
    truncated = tmp_path / "truncated.m4a"
    truncated.write_bytes((tmp_path / "x_aac2.m4a").read_bytes()[:200])
    for path in (truncated, tmp_path / "x.wav"):
        with pytest.raises(ValueError):
            mp4_audio_duration(path)


def test_musan_one_dir_per_subset_and_one_for_all(tmp_path: Path, run_cli) -> None:
    fake = make_fake_musan(tmp_path / "musan", per_source=2)
    unreadable = fake.sets["musan_music"].pop("music-jamendo-0001")
    unreadable.write_bytes(b"not audio")
    del fake.sets["musan"]["music-jamendo-0001"]
    result = run_cli("prepare", "musan", tmp_path, "--out", tmp_path / "data")
    assert result.exit_code == 0 and "music-jamendo-0001" in result.stderr
    for name, files in fake.sets.items():
        directory = tmp_path / "data" / name
        _assert_valid_and_sorted(directory)
        data = load_data_dir(directory)
        assert set(data.utterances) == set(files)
        assert all(data.utt2spk[utt] == utt for utt in data.utterances)
        assert all(data.utt2dur[u] == pytest.approx(_seconds(p), abs=1e-4) for u, p in files.items())
    assert "free-sound 2, sound-bible 2" in result.stdout
    shutil.rmtree(tmp_path / "musan" / "speech")
    prepare_musan(tmp_path / "musan", tmp_path / "partial")
    assert not (tmp_path / "partial" / "musan_speech").exists()
    assert len(load_data_dir(tmp_path / "partial" / "musan").utterances) == len(fake.sets["musan"]) - 4


def test_rirs_sets_rooms_and_lists(tmp_path: Path, run_cli) -> None:
    fake = make_fake_rirs(tmp_path, rooms=2, rirs_per_room=2, real=2, isotropic=1, pointsource=2)
    missing = fake.sets["rirs_mediumroom"].pop("medium-Room002-00002")
    missing.unlink()
    del fake.sets["rirs"]["medium-Room002-00002"]
    result = run_cli("prepare", "rirs", fake.root, "--out", tmp_path / "data")
    assert result.exit_code == 0
    assert "mediumroom/Room002/Room002-00002.wav" in result.stderr
    for name, files in fake.sets.items():
        directory = tmp_path / "data" / name
        _assert_valid_and_sorted(directory)
        assert set(load_data_dir(directory).utterances) == set(files), name
    small = load_data_dir(tmp_path / "data" / "rirs_smallroom")
    assert small.spk2utt == {
        "small-Room001": ["small-Room001-00001", "small-Room001-00002"],
        "small-Room002": ["small-Room002-00001", "small-Room002-00002"],
    }
    real = load_data_dir(tmp_path / "data" / "rirs_real")
    assert sorted(real.speakers) == ["RVB2014_type1_largeroom1", "RVB2014_type1_largeroom2"]
    stereo = "RVB2014_type1_rir_largeroom2_near_anglb"
    first_channel = soundfile.read(fake.sets["rirs_real"][stereo], dtype="float32")[0][:, 0]
    np.testing.assert_array_equal(AudioReader.from_data_dir(real).read(stereo), first_channel)


def test_rirs_without_lists_fall_back_to_names_and_folders(tmp_path: Path) -> None:
    fake = make_fake_rirs(tmp_path, rooms=1, rirs_per_room=2, real=1, isotropic=1, pointsource=1)
    for listing in fake.root.rglob("*_list"):
        listing.unlink()
    data = prepare_rirs(tmp_path, tmp_path / "data")
    assert set(data["rirs_real"].utterances) == set(fake.sets["rirs_real"])
    assert set(data["rirs_isotropic_noises"].utterances) == set(fake.sets["rirs_isotropic_noises"])
    assert data["rirs_largeroom"].utt2spk == {
        "large-Room001-00001": "large-Room001",
        "large-Room001-00002": "large-Room001",
    }
