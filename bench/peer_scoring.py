"""Figure 4: cosine and AS-norm at VoxCeleb1-O and -H sizes, beside the peers' straightforward numpy and the floor.

The data are random (only the sizes matter): 4,874 embeddings and 37,720 trials
(VoxCeleb1-O), 150,000 embeddings and 550,894 trials (VoxCeleb1-H), 256-d, a
cohort of 5,994 (VoxCeleb2's dev speakers), AS-norm over the top 300.

- spkverif: the back ends as `spkverif score` runs them (trial keys looked up,
  trials scored in blocks).
- straightforward numpy: the shape of the peers' scripts (`bench/score_bench.py`):
  a Python loop over the trials; for AS-norm, each side's full score matrix
  against the cohort sorted row by row.
- floor (AS-norm): only the work no AS-norm can skip, timed alone: every
  embedding against the cohort (one BLAS product on all cores, in blocks) and
  numpy's top-300 selection of each row, the rows split over the cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.common import Row, Section, interleaved
from bench.score_bench import spkverif_asnorm, straightforward_asnorm
from spkverif.backends.cosine import CosineScorer
from spkverif.backends.snorm import SELECTION_THREADS, selection_pool
from spkverif.stages.score import TRIAL_BLOCK, trial_indices


@dataclass
class ScoreList:
    name: str
    utterances: int
    trials: int


VOXCELEB1_O = ScoreList("VoxCeleb1-O", 4_874, 37_720)
VOXCELEB1_H = ScoreList("VoxCeleb1-H", 150_000, 550_894)


@dataclass
class ScoreSize:
    lists: tuple[ScoreList, ...] = (VOXCELEB1_O, VOXCELEB1_H)
    cohort: int = 5_994
    dim: int = 256
    top_n: int = 300
    rounds: int = 5


def make_data(trial_list: ScoreList, cohort_size: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((trial_list.utterances, dim), dtype=np.float32)
    cohort = rng.standard_normal((cohort_size, dim), dtype=np.float32)
    keys = np.array([f"id{i // 8:05d}-utt{i:06d}" for i in range(trial_list.utterances)], dtype=object)
    enroll = keys[rng.integers(0, trial_list.utterances, trial_list.trials)]
    test = keys[rng.integers(0, trial_list.utterances, trial_list.trials)]
    return keys, embeddings, cohort, enroll, test


def spkverif_cosine(keys, embeddings, enroll, test) -> np.ndarray:
    index_of = {key: i for i, key in enumerate(keys)}
    pair_scorer = CosineScorer().bind(embeddings, embeddings)
    scores = np.empty(len(enroll))
    for start in range(0, len(enroll), TRIAL_BLOCK):
        stop = start + TRIAL_BLOCK
        scores[start:stop] = pair_scorer(
            trial_indices(enroll[start:stop], index_of), trial_indices(test[start:stop], index_of)
        )
    return scores


def straightforward_cosine(keys, embeddings, enroll, test) -> np.ndarray:
    """A Python loop over the trials, one cosine each, as the peers' scoring scripts."""
    table = dict(zip(keys, embeddings, strict=True))
    scores = np.empty(len(enroll))
    for i, (e, t) in enumerate(zip(enroll, test, strict=True)):
        a, b = table[e], table[t]
        scores[i] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return scores


def floor_asnorm(embeddings: np.ndarray, cohort: np.ndarray, top_n: int, block: int = 4096) -> None:
    """The cohort product on all cores and the top-n selection of each row split over the cores, nothing else."""
    cohort_transposed = np.ascontiguousarray(cohort.T)
    kth = len(cohort) - top_n
    buffer = np.empty((min(block, len(embeddings)), len(cohort)), dtype=np.float32)
    pool = selection_pool()
    for start in range(0, len(embeddings), block):
        rows = embeddings[start : start + block]
        scores = np.matmul(rows, cohort_transposed, out=buffer[: len(rows)])
        shares = np.array_split(scores, SELECTION_THREADS)
        list(pool.map(lambda share: share.partition(kth, axis=1), shares))


def run(size: ScoreSize) -> Section:
    section = Section("scoring")
    section.lines.append(
        f"random {size.dim}-d embeddings, cohort {size.cohort:,}, AS-norm top {size.top_n}, selection over "
        f"{SELECTION_THREADS} threads, median of {size.rounds} interleaved rounds (no warm-up)"
    )
    for trial_list in size.lists:
        keys, embeddings, cohort, enroll, test = make_data(trial_list, size.cohort, size.dim)
        top_n = min(size.top_n, size.cohort)
        normalised = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        cohort_normalised = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
        results: dict[str, np.ndarray | None] = {}

        def keep(name, function, *args, results=results):
            return lambda: results.__setitem__(name, function(*args))

        # No warm-up round: nothing here compiles or caches, and the straightforward AS-norm at H size
        # takes most of a minute a round; the scores of the last round are compared.
        seconds = interleaved(
            {
                "cosine": keep("cosine", spkverif_cosine, keys, embeddings, enroll, test),
                "cosine numpy": keep("cosine numpy", straightforward_cosine, keys, embeddings, enroll, test),
                "asnorm": keep("asnorm", spkverif_asnorm, keys, embeddings, cohort, enroll, test, top_n),
                "asnorm numpy": keep(
                    "asnorm numpy", straightforward_asnorm, keys, embeddings, cohort, enroll, test, top_n
                ),
                "floor": keep("floor", floor_asnorm, normalised, cohort_normalised, top_n),
            },
            size.rounds,
            warmup=0,
        )
        label = f"{trial_list.name} ({trial_list.trials:,} trials, {trial_list.utterances:,} embeddings)"
        section.rows += [
            Row(f"{label} cosine", "s", seconds["cosine"], "straightforward numpy", seconds["cosine numpy"]),
            Row(f"{label} AS-norm", "s", seconds["asnorm"], "straightforward numpy", seconds["asnorm numpy"]),
            Row(f"{label} AS-norm", "s", seconds["asnorm"], "floor: product + selection", seconds["floor"]),
        ]
        section.lines.append(
            f"{trial_list.name}: largest score difference from the straightforward numpy: cosine "
            f"{np.abs(results['cosine'] - results['cosine numpy']).max():.1e}, AS-norm "
            f"{np.abs(results['asnorm'] - results['asnorm numpy']).max():.1e}"
        )
        print(section.lines[-1], *section.rows[-3:], sep="\n", flush=True)
    return section
