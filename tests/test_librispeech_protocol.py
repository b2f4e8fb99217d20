"""The LibriSpeech verification protocol (docs/librispeech_protocol.md): `prepare librispeech
--protocol` writes trial lists that depend on the corpus's file names alone, and the checksums
published for the full corpus are those of the real subsets' utterance ids
(tests/data/librispeech_listings, each file naming its public source)."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from spkverif.base.errors import SpkverifError
from spkverif.io.trials import write_trials
from spkverif.stages.prepare.librispeech import (
    PROTOCOL_SEED,
    PROTOCOL_TRIALS,
    chapter_of,
    make_trials,
    prepare_librispeech,
)
from tests.fake_corpora import listing_ids, make_librispeech_tree
from tests.shared_data import LIBRISPEECH, needs_librispeech

LISTINGS = Path(__file__).parent / "data" / "librispeech_listings"
# subset: utterances, speakers, chapters (the corpus's published counts), targets across chapters, sha256
PUBLISHED = {
    "dev-clean": (2703, 40, 97, 14987, "a701c7f55789f9c4b12116e269ae25d9df7386d3041f0daff1465b5545291b04"),
    "test-clean": (2620, 40, 87, 14346, "55ae8a891a8da27c33c5c9f8134477b0ea83bfd03d9c9b5872685eb057e341db"),
    "test-other": (2939, 33, 90, 17301, "1eca7278c5415100fe87472c7f4892127f41c74c5cf3444f4fa2c3e18af5d7a2"),
}
# A small tree: speaker 19 reads two chapters, 103 one, 7 two (one of them a single utterance).
SMALL = [
    *(f"19-198-{i:04d}" for i in range(4)),
    *(f"19-227-{i:04d}" for i in range(3)),
    *(f"103-1240-{i:04d}" for i in range(5)),
    "7-11-0000",
    "7-11-0001",
    "7-12-0000",
]
# Its lists: --protocol (every target pair: 34 of them, and 34 nontargets) and --trials 20 --seed 3.
SMALL_PROTOCOL_SHA256 = "f7ba81a54ea74020444672b2988a407fafc041f1324e30041ae6ddaa8f3a7290"
SMALL_DRAW_SHA256 = "88cd1dfd7f48b5817dbaa52fdb0b4f078f4d0346be3707682eca3d8de5aa0878"


def _sha256(rows: list[tuple[str, str, bool]], path: Path) -> str:
    write_trials(path, rows)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("subset", sorted(PUBLISHED))
def test_the_published_checksums_are_those_of_the_real_listings(subset: str, tmp_path: Path) -> None:
    utterances, speakers, chapters, across, digest = PUBLISHED[subset]
    ids = listing_ids(LISTINGS / f"{subset}.txt")
    assert len(set(ids)) == len(ids) == utterances
    assert len({utt.split("-")[0] for utt in ids}) == speakers and len({chapter_of(utt) for utt in ids}) == chapters
    rows = list(make_trials(ids, PROTOCOL_TRIALS, PROTOCOL_SEED))
    targets = [(a, b) for a, b, target in rows if target]
    assert len(rows) == PROTOCOL_TRIALS and len(targets) == PROTOCOL_TRIALS // 2
    assert sum(chapter_of(a) != chapter_of(b) for a, b in targets) == across
    assert _sha256(rows, tmp_path / "trials") == digest


def test_the_list_is_balanced_unique_and_crosses_chapters_where_a_speaker_has_several() -> None:
    ids = listing_ids(LISTINGS / "test-other.txt")
    rows = list(make_trials(ids, PROTOCOL_TRIALS, PROTOCOL_SEED))
    assert rows == sorted(rows) and len({(a, b) for a, b, _ in rows}) == len(rows)
    assert all(a.encode() < b.encode() and (a.split("-")[0] == b.split("-")[0]) == target for a, b, target in rows)
    chapters: dict[str, set[str]] = {}
    for utt in ids:
        chapters.setdefault(utt.split("-")[0], set()).add(chapter_of(utt))
    targets = [(a, b) for a, b, target in rows if target]
    several = [(a, b) for a, b in targets if len(chapters[a.split("-")[0]]) > 1]
    assert several and all(chapter_of(a) != chapter_of(b) for a, b in several)
    assert {a.split("-")[0] for a, _ in targets} == set(chapters)  # every reader has targets, one chapter or several


def test_same_chapter_targets_fill_in_and_a_dense_draw_takes_every_pair() -> None:
    rows = list(make_trials(SMALL, 1000, 5))
    targets = [(a, b) for a, b, target in rows if target]
    pairs = itertools.combinations(sorted(SMALL), 2)
    same_speaker = [(a, b) for a, b in pairs if a.split("-")[0] == b.split("-")[0]]
    assert sorted(targets) == sorted(same_speaker)  # 500 asked: every target pair, the within-chapter ones too
    dense = ["1-1-0000", "1-1-0001", "1-1-0002", "2-1-0000"]  # 3 target pairs, 3 nontarget pairs
    assert list(make_trials(dense, 100, 0)) == sorted((a, b, a[0] == b[0]) for a, b in itertools.combinations(dense, 2))


def test_the_same_names_give_the_same_bytes_whatever_the_creation_order(tmp_path: Path, run_cli) -> None:
    make_librispeech_tree(tmp_path / "a", {"test-other": SMALL})
    make_librispeech_tree(tmp_path / "b", {"test-other": SMALL[::-1]})
    for options, pinned in (
        (["--protocol"], SMALL_PROTOCOL_SHA256),
        (["--trials", "20", "--seed", "3"], SMALL_DRAW_SHA256),
    ):
        lists = []
        for tree, jobs in (("a", "1"), ("b", "2")):
            out = tmp_path / f"out_{tree}"
            result = run_cli("prepare", "librispeech", tmp_path / tree, "--out", out, "--jobs", jobs, *options)
            assert result.exit_code == 0, result.stderr
            lists.append((out / "test_other" / "trials").read_bytes())
            assert hashlib.sha256(lists[-1]).hexdigest() in result.stdout  # the table prints it
        assert lists[0] == lists[1]
        assert hashlib.sha256(lists[0]).hexdigest() == pinned  # a change to the protocol's bytes fails here
    result = prepare_librispeech(tmp_path / "a", tmp_path / "out_c", protocol=True)
    listed = result.lists["test_other"]
    assert (listed.trials, listed.targets, listed.across_sessions, listed.sha256) == (68, 34, 14, SMALL_PROTOCOL_SHA256)


@pytest.mark.parametrize(
    ("ids", "args", "message"),
    [
        (SMALL, ["--trials", "1"], "'--trials': 1 is not in the range x>=2"),
        (["19-198-0000", "103-1240-0000"], ["--protocol"], "test-other: no speaker has two utterances"),
        (["19-198-0000", "19-198-0001"], ["--trials", "10"], "test-other: one speaker only"),
        (SMALL, ["--protocol", "--subsets", "train-clean-100"], "--protocol covers dev-clean"),
        (SMALL, ["--protocol", "--trials", "10"], f"--protocol is --trials {PROTOCOL_TRIALS} --seed 0"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, run_cli, ids: list[str], args: list[str], message: str) -> None:
    make_librispeech_tree(tmp_path / "corpus", {"test-other": ids})
    result = run_cli("prepare", "librispeech", "-q", tmp_path / "corpus", "--out", tmp_path / "data", *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spkverif prepare: error:") and message in lines[0], lines
    assert not (tmp_path / "data" / "test_other").exists()


def test_a_draw_below_two_trials_is_refused_by_the_stage(tmp_path: Path) -> None:
    make_librispeech_tree(tmp_path / "corpus", {"test-other": SMALL})
    with pytest.raises(SpkverifError, match="--trials must be at least 2"):
        prepare_librispeech(tmp_path / "corpus", tmp_path / "data", num_trials=1)


@needs_librispeech
def test_the_shared_subset_gives_its_published_checksum(tmp_path: Path) -> None:
    listed = prepare_librispeech(LIBRISPEECH, tmp_path / "data", subsets=["test-other"], protocol=True).lists
    # ten readers, ten utterances each from one chapter: every target pair (450), as many nontargets
    assert (listed["test_other"].trials, listed["test_other"].across_sessions) == (900, 0)
    assert listed["test_other"].sha256 == "12f8e22824c553ff078b7698723e75701f33c7f4598d0d2c5c14ea349e9a5508"
