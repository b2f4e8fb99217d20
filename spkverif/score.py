"""The `score` stage: trials + embeddings -> a Kaldi score file `enroll test score`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.backends import BACKENDS
from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.specifiers import load_vectors
from spkverif.io.trials import read_trials

logger = logging.getLogger(__name__)


def _indices(keys: np.ndarray, index_of: dict[str, int]) -> np.ndarray:
    return np.array([index_of.get(key, -1) for key in keys], dtype=np.int64)


def score(
    method: str,
    trials_path: str | Path,
    enroll_rspecifier: str,
    output: str | Path,
    test_rspecifier: str | None = None,
    allow_missing: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every trial; a trial naming a missing embedding is an error unless allowed."""
    scorer = BACKENDS.build(method, **dict(options or {}))
    trials = read_trials(trials_path)
    enroll_keys, enroll = load_vectors(enroll_rspecifier)
    if test_rspecifier is None:
        test_keys, test = enroll_keys, enroll
    else:
        test_keys, test = load_vectors(test_rspecifier)
    if enroll.shape[1] != test.shape[1]:
        raise SpkverifError(f"enrolment embeddings have dimension {enroll.shape[1]}, test embeddings {test.shape[1]}")
    enroll_index = _indices(trials.enroll, {key: i for i, key in enumerate(enroll_keys)})
    test_index = _indices(trials.test, {key: i for i, key in enumerate(test_keys)})
    present = (enroll_index >= 0) & (test_index >= 0)
    missing = int((~present).sum())
    if missing and not allow_missing:
        first = np.flatnonzero(~present)[:3]
        examples = ", ".join(
            f"line {trials.lines[i]}: {trials.enroll[i] if enroll_index[i] < 0 else trials.test[i]}" for i in first
        )
        raise SpkverifError(
            f"{missing} of {len(trials)} trials name embeddings that are missing ({examples}); "
            "pass --allow-missing to skip them",
            trials_path,
        )
    if missing:
        logger.warning("skipping %d of %d trials whose embeddings are missing", missing, len(trials))
    if not present.any():
        raise SpkverifError("no trial can be scored", trials_path)
    scores = scorer.score(enroll, test, enroll_index[present], test_index[present])
    with atomic_write(output) as handle:
        handle.writelines(
            f"{e} {t} {s:.6f}\n" for e, t, s in zip(trials.enroll[present], trials.test[present], scores, strict=False)
        )
    return {"trials": int(present.sum()), "missing": missing}
