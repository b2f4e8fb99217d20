"""Trial lists made from a data directory: every pair, or a balanced seeded sample.

Used by `prepare mini`, `prepare dir --trials N` and `prepare librispeech`. A target
pair of two recordings of one session (a LibriSpeech chapter, a folder below the
speaker) is easier than one across sessions, so when a sample is drawn the
cross-session targets are taken first, as VoxCeleb1-O takes targets across videos.
"""

from __future__ import annotations

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


def balanced_trials(
    utt2spk: dict[str, str],
    num_trials: int,
    rng: np.random.Generator,
    utt2session: dict[str, str] | None = None,
) -> list[Trial]:
    """Half target, half nontarget pairs, each pair once, sorted like Kaldi's lists.

    With `utt2session`, target pairs across sessions are drawn first and pairs
    within one session only when there are too few of those. Fewer than
    `num_trials` come back when the data has fewer target (or nontarget) pairs
    than half of it. Raises SpkverifError when no target pair is possible.
    """
    utts = sorted(utt2spk)
    by_speaker: dict[str, list[str]] = {}
    for utt in utts:
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    targets = [(a, b) for group in by_speaker.values() for i, a in enumerate(group) for b in group[i + 1 :]]
    if not targets:
        raise SpkverifError("no speaker has two utterances: no target trial can be made")
    half = min(num_trials // 2, len(targets))
    if utt2session is None:
        chosen = [targets[i] for i in rng.choice(len(targets), size=half, replace=False)]
    else:
        across = [pair for pair in targets if utt2session[pair[0]] != utt2session[pair[1]]]
        within = [pair for pair in targets if utt2session[pair[0]] == utt2session[pair[1]]]
        take_across = min(half, len(across))
        chosen = [across[i] for i in rng.choice(len(across), size=take_across, replace=False)]
        if half > take_across:
            chosen += [within[i] for i in rng.choice(len(within), size=half - take_across, replace=False)]
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
