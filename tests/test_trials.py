"""Trial lists: both forms, unlabelled lists, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from spkverif.base.errors import SpkverifError
from spkverif.io.trials import read_trials, validate_trials, write_trials


def test_kaldi_form_round_trip(tmp_path: Path) -> None:
    write_trials(tmp_path / "t", [("a", "b", True), ("a", "c", False)])
    assert (tmp_path / "t").read_text() == "a b target\na c nontarget\n"
    trials = read_trials(tmp_path / "t")
    assert list(trials.enroll) == ["a", "a"] and list(trials.test) == ["b", "c"]
    assert list(trials.labels) == [True, False]


def test_voxceleb_form(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n0 a.wav b.wav\n")
    trials = read_trials(tmp_path / "t")
    assert trials.enroll[0] == "id10270/x6uYqmx31kE/00001.wav"
    assert list(trials.labels) == [True, False]


def test_unlabelled_list_scores_but_cannot_be_evaluated(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a b\nc d\n")
    trials = read_trials(tmp_path / "t")
    assert trials.labels is None
    with pytest.raises(SpkverifError, match="no target/nontarget labels"):
        trials.require_labels()


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("a b target\na b maybe\n", 2, "expected"),
        ("a b target\n1 a b\n", 2, "voxceleb form"),
        ("a b target c\n", 1, "expected"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    (tmp_path / "t").write_text(text)
    with pytest.raises(SpkverifError, match=match) as caught:
        read_trials(tmp_path / "t")
    assert caught.value.line == line and caught.value.path == str(tmp_path / "t")


def test_unknown_utterances_are_located(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a b target\na z nontarget\n")
    problems = validate_trials(read_trials(tmp_path / "t"), {"a", "b"})
    assert [(p.line, "'z'" in p.message) for p in problems] == [(2, True)]
