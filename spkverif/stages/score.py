"""The `score` stage: trials + embeddings -> a Kaldi score file `enroll test score`.

The trial list is streamed in blocks: each block is mapped to embedding rows,
scored by the back end in one vectorised call, and appended to the output, so
memory depends on the embeddings and the block size, not on the number of trials.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.backends import BACKENDS
from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar
from spkverif.io.atomic import atomic_write
from spkverif.io.specifiers import load_vectors
from spkverif.io.trials import Trials, iter_trials

logger = logging.getLogger(__name__)

METHOD = "cosine"
"""The back end unless told (`--method`)."""
TRIAL_BLOCK = 1 << 18
MISSING_EXAMPLES = 3


def trial_indices(keys: np.ndarray, index_of: dict[str, int]) -> np.ndarray:
    """The row of each key (N,) of a trial block in its embedding matrix, -1 where it has none: (N,) int64."""
    return np.fromiter((index_of.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))


def _count_lines(path: str | Path) -> int | None:
    """Lines of a regular file, for the progress bar; None for `-` and pipes, which are read once."""
    if str(path) == "-" or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _example(enroll: np.ndarray, test: np.ndarray) -> str:
    return str(enroll[0]) if len(enroll) else str(test[0])


class MissingTrials:
    """Counts trials naming missing embeddings and remembers the first few."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, block: Trials, enroll_index: np.ndarray, test_index: np.ndarray, absent: np.ndarray) -> None:
        self.count += int(absent.sum())
        for i in np.flatnonzero(absent)[: MISSING_EXAMPLES - len(self.examples)]:
            key = block.enroll[i] if enroll_index[i] < 0 else block.test[i]
            self.examples.append(f"line {block.lines[i]}: {key}")


def score(
    method: str,
    trials_path: str | Path,
    enroll_rspecifier: str,
    output: str | Path,
    test_rspecifier: str | None = None,
    allow_missing: bool = False,
    options: dict[str, Any] | None = None,
    block_size: int = TRIAL_BLOCK,
) -> dict[str, Any]:
    """Score every trial; a trial naming a missing embedding is an error unless allowed."""
    scorer = BACKENDS.build(method, **dict(options or {}))
    enroll_keys, enroll = load_vectors(enroll_rspecifier)
    if test_rspecifier is None:
        test_keys, test = enroll_keys, enroll
    else:
        test_keys, test = load_vectors(test_rspecifier)
    if enroll.shape[1] != test.shape[1]:
        raise SpkverifError(f"enrolment embeddings have dimension {enroll.shape[1]}, test embeddings {test.shape[1]}")
    enroll_index_of = {key: i for i, key in enumerate(enroll_keys)}
    test_index_of = enroll_index_of if test is enroll else {key: i for i, key in enumerate(test_keys)}
    pair_scorer = scorer.bind(enroll, test)
    missing = MissingTrials()
    scored = total = 0
    with (
        atomic_write(output) as handle,
        ProgressBar(_count_lines(trials_path), f"score {method}", unit="trial") as bar,
    ):
        for block in iter_trials(trials_path, block_size):
            total += len(block)
            enroll_index = trial_indices(block.enroll, enroll_index_of)
            test_index = trial_indices(block.test, test_index_of)
            present = (enroll_index >= 0) & (test_index >= 0)
            if not present.all():
                missing.add(block, enroll_index, test_index, ~present)
            if missing.count and not allow_missing:
                bar.advance(len(block))
                continue
            scores = pair_scorer(enroll_index[present], test_index[present])
            handle.writelines(
                f"{e} {t} {s:.6f}\n" for e, t, s in zip(block.enroll[present], block.test[present], scores, strict=True)
            )
            scored += int(present.sum())
            bar.advance(len(block))
        if missing.count == total:
            raise SpkverifError(
                f"none of the {total} trials names ids of the embeddings: the ids do not match "
                f"(the trials name e.g. {_example(block.enroll, block.test)!r}, the embeddings hold e.g. "
                f"{enroll_keys[0]!r}); make both sides use the same ids",
                trials_path,
            )
        if missing.count and not allow_missing:
            raise SpkverifError(
                f"{missing.count} of {total} trials name embeddings that are missing "
                f"({', '.join(missing.examples)}); pass --allow-missing to skip them",
                trials_path,
            )
        if not scored:
            raise SpkverifError("no trial can be scored", trials_path)
    if missing.count:
        logger.warning(
            "skipped %d of %d trials whose embeddings are missing (%s)",
            missing.count,
            total,
            ", ".join(missing.examples),
        )
    return {"trials": scored, "missing": missing.count}
