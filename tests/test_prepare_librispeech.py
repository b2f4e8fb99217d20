"""prepare librispeech on fake trees with the corpus's layout (tests/fake_corpora.py), and on the
shared real subset when it is there."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from spkverif.base.errors import SpkverifError
from spkverif.io.datadir import load_data_dir, validate_data_dir
from spkverif.io.trials import read_trials
from spkverif.stages.prepare.librispeech import prepare_librispeech
from tests.fake_corpora import make_fake_librispeech
from tests.shared_data import LIBRISPEECH, needs_librispeech


def _rows(path: Path) -> list[tuple[str, str, bool]]:
    trials = read_trials(path)
    return list(zip(trials.enroll.tolist(), trials.test.tolist(), trials.labels.tolist(), strict=True))


def test_subsets_ids_genders_durations_and_all_pair_trials(tmp_path: Path, run_cli) -> None:
    fake = make_fake_librispeech(tmp_path / "corpus", {"train-clean-100": 4, "test-other": 3})
    result = run_cli("prepare", "librispeech", tmp_path / "corpus", "--out", tmp_path / "data")
    assert result.exit_code == 0, result.stderr
    assert "train_clean_100" in result.stdout and "/ 28,539" in result.stdout
    for subset, name in (("train-clean-100", "train_clean_100"), ("test-other", "test_other")):
        directory = tmp_path / "data" / name
        assert validate_data_dir(directory, check_audio_files=True) == []
        data = load_data_dir(directory)
        files = fake.subsets[subset]
        assert set(data.utterances) == set(files)  # the corpus's own ids: 103-1240-0000
        assert all(data.utt2spk[utt] == utt.split("-")[0] for utt in files)
        assert {data.wav_scp[utt] for utt in files} == {str(path.resolve()) for path in files.values()}
        assert all(0.3 < data.utt2dur[utt] < 0.5 for utt in files)
        genders = dict(line.split() for line in (directory / "spk2gender").read_text().splitlines())
        assert genders == {spk: fake.genders[spk] for spk in data.speakers}
    assert not (tmp_path / "data" / "train_clean_100" / "trials").exists()
    utts = sorted(fake.subsets["test-other"])
    expected = [(a, b, a.split("-")[0] == b.split("-")[0]) for a, b in itertools.combinations(utts, 2)]
    assert _rows(tmp_path / "data" / "test_other" / "trials") == expected  # 12 utterances: 66 pairs


def test_balanced_trials_are_seeded_and_prefer_cross_chapter_targets(tmp_path: Path) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"test-clean": 4}, chapters=2, utts=3)
    first = prepare_librispeech(tmp_path / "corpus", tmp_path / "a", num_trials=40, seed=3)
    prepare_librispeech(tmp_path / "corpus", tmp_path / "b", num_trials=40, seed=3)
    prepare_librispeech(tmp_path / "corpus", tmp_path / "c", num_trials=40, seed=4)
    rows = _rows(tmp_path / "a" / "test_clean" / "trials")
    assert first.trials == {"test_clean": 40}
    assert rows == _rows(tmp_path / "b" / "test_clean" / "trials")
    assert rows != _rows(tmp_path / "c" / "test_clean" / "trials")
    targets = [(a, b) for a, b, is_target in rows if is_target]
    assert len(targets) == 20 and len(set(rows)) == 40
    # Each speaker has 3 x 3 = 9 cross-chapter target pairs, 36 in all: the 20 drawn are all across chapters.
    assert all(a.split("-")[1] != b.split("-")[1] for a, b in targets)
    assert all(a.split("-")[0] != b.split("-")[0] for a, b, is_target in rows if not is_target)


def test_same_chapter_targets_fill_in_when_cross_chapter_ones_run_out(tmp_path: Path) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"dev-other": 3}, chapters=2, utts=2)
    prepare_librispeech(tmp_path / "corpus", tmp_path / "data", num_trials=30)
    targets = [(a, b) for a, b, t in _rows(tmp_path / "data" / "dev_other" / "trials") if t]
    # 3 speakers x (4 cross + 2 same-chapter) = 18 target pairs, 15 asked for: all 12 cross ones and 3 others.
    across = [pair for pair in targets if pair[0].split("-")[1] != pair[1].split("-")[1]]
    assert len(targets) == 15 and len(across) == 12


def test_bad_input_is_listed_skipped_and_counted(tmp_path: Path, run_cli) -> None:
    fake = make_fake_librispeech(tmp_path / "corpus", {"train-clean-100": 3}, speakers_txt=False)
    files = fake.subsets["train-clean-100"]
    misnamed = sorted(files.values())[0]
    moved = misnamed.with_name("999-1-0000.flac")
    misnamed.rename(moved)
    corrupt = sorted(files.values())[1]
    corrupt.write_bytes(b"fLaC not really")
    result = run_cli("prepare", "librispeech", tmp_path / "corpus" / "LibriSpeech", "--out", tmp_path / "data")
    assert result.exit_code == 0, result.stderr
    assert "no SPEAKERS.TXT" in result.stderr and "spk2gender is not written" in result.stderr
    assert f"misnamed: {moved}" in result.stderr
    assert f"unreadable or empty: {corrupt}" in result.stderr
    data = load_data_dir(tmp_path / "data" / "train_clean_100")
    assert len(data.utterances) == len(files) - 2
    assert not (tmp_path / "data" / "train_clean_100" / "spk2gender").exists()
    row = next(line for line in result.stdout.splitlines() if "train_clean_100" in line)
    assert row.rstrip(" │").endswith("2")  # left out: one misnamed, one unreadable


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subsets", "test-other"], "subset 'test-other' is not there"),
        (["--subsets", "test-noisy"], "unknown subset 'test-noisy'"),
    ],
)
def test_a_subset_not_there_is_one_line(tmp_path: Path, run_cli, args: list[str], message: str) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"train-clean-100": 2})
    result = run_cli("prepare", "librispeech", tmp_path / "corpus", "--out", tmp_path / "data", *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spkverif prepare: error:") and message in lines[0]
    assert not (tmp_path / "data").exists()


def test_a_failed_run_leaves_the_old_data_directory_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"test-other": 2})
    prepare_librispeech(tmp_path / "corpus", tmp_path / "data")
    before = {p.name: p.read_bytes() for p in (tmp_path / "data" / "test_other").iterdir()}

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("spkverif.stages.prepare.librispeech.write_trials", fail)
    with pytest.raises(SpkverifError, match="test_other: disk full"):  # the machine's error, named on one line
        prepare_librispeech(tmp_path / "corpus", tmp_path / "data")
    after = {p.name: p.read_bytes() for p in (tmp_path / "data" / "test_other").iterdir()}
    assert after == before
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["test_other"]


def test_an_output_holding_other_work_is_refused(tmp_path: Path) -> None:
    make_fake_librispeech(tmp_path / "corpus", {"test-other": 2})
    (tmp_path / "data" / "test_other" / "exp").mkdir(parents=True)
    with pytest.raises(SpkverifError, match="'exp', which is not a data-directory file"):
        prepare_librispeech(tmp_path / "corpus", tmp_path / "data")
    assert (tmp_path / "data" / "test_other" / "exp").is_dir()


@needs_librispeech
def test_the_shared_real_subset(tmp_path: Path) -> None:
    result = prepare_librispeech(LIBRISPEECH, tmp_path / "data")
    assert set(result.data) >= {"train_clean_100", "test_other"}
    train, test = result.data["train_clean_100"], result.data["test_other"]
    assert len(train.speakers) == 251 and len(train.utterances) == 251
    assert len(test.speakers) == 10 and len(test.utterances) == 100
    assert result.trials["test_other"] == 4950
    assert "103-1240-0000" in train.utterances
    genders = (tmp_path / "data" / "test_other" / "spk2gender").read_text().split()
    assert sorted(genders[1::2]) == ["f"] * 5 + ["m"] * 5
