"""prepare mini (deterministic, sized, disjoint, balanced) and prepare dir."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from spkverif.io.datadir import load_data_dir, validate_data_dir
from spkverif.io.trials import read_trials
from spkverif.stages.prepare.directory import prepare_dir
from spkverif.stages.prepare.mini import MiniOptions, prepare_mini
from tests.conftest import TINY, write_wav


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.wav")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_mini_corpus_shape(tiny_corpus: Path) -> None:
    train, test = load_data_dir(tiny_corpus / "train"), load_data_dir(tiny_corpus / "test")
    assert len(train.speakers) == TINY.num_speakers - TINY.num_test_speakers
    assert len(test.speakers) == TINY.num_test_speakers
    assert not set(train.speakers) & set(test.speakers)
    assert all(len(utts) == TINY.utts_per_speaker for utts in train.spk2utt.values())
    for utt, seconds in test.utt2dur.items():
        samples, rate = soundfile.read(test.wav_scp[utt])
        assert rate == 16000 and TINY.min_seconds <= len(samples) / rate <= TINY.max_seconds
        assert abs(len(samples) / rate - seconds) < 1e-3
    trials = read_trials(tiny_corpus / "test" / "trials")
    assert len(trials) == TINY.num_trials and trials.labels.sum() == TINY.num_trials // 2
    assert all(
        test.utt2spk[e] != test.utt2spk[t]
        for e, t, y in zip(trials.enroll, trials.test, trials.labels, strict=False)
        if not y
    )
    assert all(
        test.utt2spk[e] == test.utt2spk[t]
        for e, t, y in zip(trials.enroll, trials.test, trials.labels, strict=False)
        if y
    )
    assert validate_data_dir(tiny_corpus / "train", check_audio_files=True) == []


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_the_jobs(tmp_path: Path) -> None:
    options = MiniOptions(
        num_speakers=6, num_test_speakers=2, utts_per_speaker=2, min_seconds=1.0, max_seconds=1.5, num_trials=4
    )
    prepare_mini(tmp_path / "a", MiniOptions(**{**options.__dict__, "jobs": 1}))
    prepare_mini(tmp_path / "b", MiniOptions(**{**options.__dict__, "jobs": 2}))
    prepare_mini(tmp_path / "c", MiniOptions(**{**options.__dict__, "seed": 1}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert (tmp_path / "a" / "test" / "trials").read_bytes() == (tmp_path / "b" / "test" / "trials").read_bytes()


def test_speakers_sound_different(tiny_corpus: Path) -> None:
    """A crude check that identities differ: mean spectra of two speakers are further
    apart than two utterances of one speaker, for most pairs."""
    data = load_data_dir(tiny_corpus / "train")

    def spectrum(utt: str) -> np.ndarray:
        samples, _ = soundfile.read(data.wav_scp[utt])
        frames = samples[: len(samples) // 512 * 512].reshape(-1, 512)
        return np.log(np.abs(np.fft.rfft(frames * np.hanning(512))).mean(axis=0) + 1e-6)

    spectra = {spk: [spectrum(u) for u in utts] for spk, utts in data.spk2utt.items()}
    within = np.mean([np.linalg.norm(s[0] - s[1]) for s in spectra.values()])
    speakers = list(spectra)
    between = np.mean([np.linalg.norm(spectra[a][0] - spectra[b][0]) for a in speakers for b in speakers if a < b])
    assert between > within


def test_prepare_dir_walks_speaker_trees(tmp_path: Path) -> None:
    write_wav(tmp_path / "root" / "alice" / "day1" / "a.wav", 1.0)
    write_wav(tmp_path / "root" / "alice" / "b.wav", 1.5)
    samples = np.zeros(8000, dtype=np.float32)
    (tmp_path / "root" / "bob").mkdir()
    soundfile.write(tmp_path / "root" / "bob" / "c.flac", samples, 16000)
    (tmp_path / "root" / "bob" / "notes.txt").write_text("not audio")
    (tmp_path / "root" / "bob" / "broken.wav").write_bytes(b"RIFF....")
    data = prepare_dir(tmp_path / "root", tmp_path / "data", jobs=2)
    assert data.utt2spk == {"alice-b": "alice", "alice-day1-a": "alice", "bob-c": "bob"}
    assert data.utt2dur == {"alice-b": 1.5, "alice-day1-a": 1.0, "bob-c": 0.5}
    assert validate_data_dir(tmp_path / "data", check_audio_files=True) == []


def test_prepare_dir_ids_say_each_part_once_and_trials_are_written(tmp_path: Path, run_cli) -> None:
    for chapter in ("142285", "142286"):
        for number in range(2):
            write_wav(tmp_path / "root" / "1688" / chapter / f"1688-{chapter}-{number:04d}.flac", 0.5)
    write_wav(tmp_path / "root" / "bob" / "x" / "bob-1.wav", 0.5)  # only the speaker repeated
    write_wav(tmp_path / "root" / "bob" / "x" / "2.wav", 0.5)
    write_wav(tmp_path / "root" / "bob" / "y" / "3.wav", 0.5)
    result = run_cli("prepare", "dir", tmp_path / "root", "--out", tmp_path / "data", "--trials", "0")
    assert result.exit_code == 0, result.stderr
    utts = [line.split()[0] for line in (tmp_path / "data" / "utt2spk").read_text().splitlines()]
    assert utts == [
        "1688-142285-0000", "1688-142285-0001", "1688-142286-0000", "1688-142286-0001",
        "bob-x-1", "bob-x-2", "bob-y-3",
    ]  # fmt: skip
    trials = read_trials(tmp_path / "data" / "trials")
    assert len(trials) == 7 * 6 // 2 and int(trials.labels.sum()) == 6 + 3
    result = run_cli("prepare", "dir", tmp_path / "root", "--out", tmp_path / "data", "--trials", "6", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    trials = read_trials(tmp_path / "data" / "trials")
    targets = [(a, b) for a, b, t in zip(trials.enroll, trials.test, trials.labels, strict=True) if t]
    # Cross-folder targets (1688: 4, bob: 2) outnumber the 3 asked for, so every target crosses folders.
    assert len(trials) == 6 and len(targets) == 3
    assert all(a.rsplit("-", 1)[0] != b.rsplit("-", 1)[0] for a, b in targets)
    run_cli("prepare", "dir", tmp_path / "root", "--out", tmp_path / "data")
    assert not (tmp_path / "data" / "trials").exists()  # a rerun without --trials leaves no stale list
