"""Data directories: round trip and every kind of problem validate_data_dir must locate."""

from __future__ import annotations

from pathlib import Path

import pytest

from spkverif.base.errors import SpkverifError
from spkverif.io.datadir import DataDir, Segment, load_data_dir, validate_data_dir
from tests.conftest import write_data_dir, write_wav


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    files = {f"spk{s}-u{u}": str(write_wav(tmp_path / f"a{s}{u}.wav", seed=s * 10 + u)) for s in (1, 2) for u in (1, 2)}
    return write_data_dir(tmp_path / "data", files, {utt: utt.split("-")[0] for utt in files})


def test_round_trip_keeps_every_file(tmp_path: Path) -> None:
    data = DataDir(
        wav_scp={"rec1": "/a/rec1.wav", "rec2": "sox /a/rec2.flac -t wav - |"},
        utt2spk={"spkA-1": "spkA", "spkA-2": "spkA", "spkB-1": "spkB"},
        segments={
            "spkA-1": Segment("rec1", 0.0, 1.5),
            "spkA-2": Segment("rec1", 1.5, None),
            "spkB-1": Segment("rec2", 0.25, 2.0),
        },
        utt2dur={"spkA-1": 1.5, "spkA-2": 2.0, "spkB-1": 1.75},
    )
    data.save(tmp_path / "d")
    loaded = load_data_dir(tmp_path / "d")
    assert loaded.wav_scp == data.wav_scp
    assert loaded.utt2spk == data.utt2spk
    assert loaded.spk2utt == {"spkA": ["spkA-1", "spkA-2"], "spkB": ["spkB-1"]}
    assert loaded.segments == data.segments
    assert loaded.utt2dur == data.utt2dur
    assert (tmp_path / "d" / "segments").read_text().splitlines()[1] == "spkA-2 rec1 1.500 -1"
    assert loaded.audio_spec("spkB-1") == ("sox /a/rec2.flac -t wav - |", 0.25, 2.0)


def test_valid_directory_has_no_problems(good_dir: Path) -> None:
    assert validate_data_dir(good_dir, check_audio_files=True) == []


def _only_problem(path: Path, **kwargs) -> SpkverifError:
    problems = validate_data_dir(path, **kwargs)
    assert len(problems) >= 1
    return problems[0]


def test_unsorted_keys_are_located(good_dir: Path) -> None:
    lines = (good_dir / "utt2spk").read_text().splitlines()
    (good_dir / "utt2spk").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    problem = _only_problem(good_dir)
    assert problem.path.endswith("utt2spk") and problem.line == 2 and "not sorted" in problem.message


def test_duplicate_keys_are_located(good_dir: Path) -> None:
    lines = (good_dir / "wav.scp").read_text().splitlines()
    (good_dir / "wav.scp").write_text("\n".join([lines[0], lines[0], *lines[1:]]) + "\n")
    problem = _only_problem(good_dir)
    assert problem.path.endswith("wav.scp") and problem.line == 2 and "duplicate key" in problem.message


def test_speaker_without_utterances(good_dir: Path) -> None:
    with open(good_dir / "spk2utt", "a") as handle:
        handle.write("spk9\n")
    problem = _only_problem(good_dir)
    assert problem.path.endswith("spk2utt") and problem.line == 3 and "spk9" in problem.message


def test_utterance_without_audio(good_dir: Path) -> None:
    lines = (good_dir / "wav.scp").read_text().splitlines()
    (good_dir / "wav.scp").write_text("\n".join(lines[1:]) + "\n")
    problem = _only_problem(good_dir)
    assert problem.path.endswith("utt2spk") and problem.line == 1 and "no audio" in problem.message


def test_missing_audio_file_is_found_when_asked(good_dir: Path) -> None:
    first = (good_dir / "wav.scp").read_text().split()[1]
    Path(first).unlink()
    assert validate_data_dir(good_dir) == []
    problem = _only_problem(good_dir, check_audio_files=True)
    assert problem.line == 1 and "does not exist" in problem.message


def test_malformed_line(good_dir: Path) -> None:
    with open(good_dir / "utt2spk", "a") as handle:
        handle.write("spk3-u1 spk3 extra\n")
    problems = validate_data_dir(good_dir)
    assert any(p.path.endswith("utt2spk") and p.line == 5 and "fields" in p.message for p in problems)


def test_empty_directory(tmp_path: Path) -> None:
    write_data_dir(tmp_path / "d", {}, {})
    with pytest.raises(SpkverifError, match="empty"):
        load_data_dir(tmp_path / "d")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SpkverifError, match="no such data directory"):
        load_data_dir(tmp_path / "nope")


def test_segments_naming_unknown_recording(tmp_path: Path) -> None:
    data = DataDir(wav_scp={"rec1": "/x.wav"}, utt2spk={"s-1": "s"}, segments={"s-1": Segment("rec2", 0.0, 1.0)})
    data.save(tmp_path / "d")
    problem = _only_problem(tmp_path / "d")
    assert problem.path.endswith("segments") and problem.line == 1 and "rec2" in problem.message
