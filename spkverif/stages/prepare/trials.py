"""Trial lists made from a data directory: every pair, or a balanced sample.

Used by `prepare mini`, `prepare dir --trials N` and `prepare librispeech`. A target
pair of two recordings of one session (a LibriSpeech chapter, a folder below the
speaker) is easier than one across sessions, so a sample takes a speaker's targets
across sessions where the speaker has several, as VoxCeleb1-O takes targets across
videos.

`balanced_trials` draws by sha256 of the seed and the utterance ids, so its bytes
depend on the ids alone (not on numpy's version, the file system's order, or the
platform): the LibriSpeech protocol (docs/librispeech_protocol.md) is made with it.
`sampled_trials` is the mini corpus's older draw with numpy's Generator, kept so that
the mini recipe's recorded figures stay reproducible.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Iterator

import numpy as np

from spkverif.base.errors import SpkverifError

Trial = tuple[str, str, bool]


def all_pairs(utt2spk: dict[str, str]) -> Iterator[Trial]:
    """Every unordered pair (enroll < test in C order) once: n (n - 1) / 2 trials, target when one speaker."""
    utts = sorted(utt2spk, key=str.encode)
    for enroll, test in itertools.combinations(utts, 2):
        yield enroll, test, utt2spk[enroll] == utt2spk[test]


def _key(seed: int, *words: str) -> bytes:
    """sha256 of the seed and the words, space-separated, in UTF-8."""
    return hashlib.sha256(" ".join((str(seed), *words)).encode()).digest()


def _by_speaker(utt2spk: dict[str, str]) -> tuple[list[str], dict[str, list[str]]]:
    """The utterances in C order, and each speaker's in that order."""
    utts = sorted(utt2spk, key=str.encode)
    groups: dict[str, list[str]] = {}
    for utt in utts:
        groups.setdefault(utt2spk[utt], []).append(utt)
    return utts, groups


def balanced_trials(
    utt2spk: dict[str, str],
    num_trials: int,
    seed: int,
    utt2session: dict[str, str] | None = None,
) -> list[Trial]:
    """Half target, half nontarget pairs, each pair once, sorted like Kaldi's lists (C order).

    With n utterances in C order and h = min(num_trials // 2, target pairs, nontarget pairs):

    - targets: every same-speaker pair (a, b), a < b, ranked by (tier, sha256("SEED target
      a b")); tier 0 when the two sessions differ or the speaker has one session only (or
      `utt2session` is None), tier 1 for a pair within one of a speaker's several sessions.
      The first h are taken: within-session pairs only when the cross-session ones run out.
    - nontargets: for i = 0, 1, 2, ..., d = sha256("SEED nontarget i") names utterances
      x = d[0:8] mod n and y = d[8:16] mod n (big-endian); the pair is taken when their
      speakers differ and it is not taken already, until h are.

    Returns 2 h trials (fewer than `num_trials` when the data has too few pairs). Raises
    SpkverifError when no speaker has two utterances or there is only one speaker.
    """
    utts, groups = _by_speaker(utt2spk)
    targets: list[tuple[int, bytes, str, str]] = []
    for group in groups.values():
        sessions = [utt2session[utt] for utt in group] if utt2session is not None else [""] * len(group)
        several = len(set(sessions)) > 1
        for (a, session_a), (b, session_b) in itertools.combinations(zip(group, sessions, strict=True), 2):
            tier = int(several and session_a == session_b)
            targets.append((tier, _key(seed, "target", a, b), a, b))
    if not targets:
        raise SpkverifError("no speaker has two utterances: no target trial can be made")
    n = len(utts)
    nontarget_pairs = n * (n - 1) // 2 - len(targets)
    if nontarget_pairs == 0:
        raise SpkverifError("one speaker only: no nontarget trial can be made")
    half = min(num_trials // 2, len(targets), nontarget_pairs)
    rows = [(a, b, True) for _, _, a, b in heapq.nsmallest(half, targets)]
    if half == nontarget_pairs:  # every nontarget pair: the draw below would end with the same set
        rows += [(a, b, False) for a, b, target in all_pairs(utt2spk) if not target]
        return sorted(rows)
    nontargets: set[tuple[str, str]] = set()
    for counter in itertools.count():
        if len(nontargets) == half:
            break
        digest = _key(seed, "nontarget", str(counter))
        x, y = int.from_bytes(digest[:8], "big") % n, int.from_bytes(digest[8:16], "big") % n
        first, second = utts[min(x, y)], utts[max(x, y)]
        if utt2spk[first] != utt2spk[second]:
            nontargets.add((first, second))
    rows += [(a, b, False) for a, b in nontargets]
    return sorted(rows)


def sampled_trials(utt2spk: dict[str, str], num_trials: int, rng: np.random.Generator) -> list[Trial]:
    """Half target, half nontarget pairs drawn with numpy's `rng` (the mini corpus's draw), sorted.

    Fewer than `num_trials` come back when the data has fewer target (or nontarget) pairs
    than half of it. Raises SpkverifError when no target pair is possible.
    """
    utts = sorted(utt2spk)
    targets = [pair for group in _by_speaker(utt2spk)[1].values() for pair in itertools.combinations(group, 2)]
    if not targets:
        raise SpkverifError("no speaker has two utterances: no target trial can be made")
    half = min(num_trials // 2, len(targets))
    chosen = [targets[i] for i in rng.choice(len(targets), size=half, replace=False)]
    nontargets: set[tuple[str, str]] = set()
    possible = len(utts) * (len(utts) - 1) // 2 - len(targets)
    half = min(half, possible)
    while len(nontargets) < half:
        a, b = rng.choice(len(utts), size=2, replace=False)
        first, second = sorted((utts[a], utts[b]))
        if utt2spk[first] != utt2spk[second]:
            nontargets.add((first, second))
    rows = [(a, b, True) for a, b in chosen] + [(a, b, False) for a, b in nontargets]
    return sorted(rows)
