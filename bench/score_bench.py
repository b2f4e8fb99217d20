"""Scoring speed at VoxCeleb1-H size: spkverif's AS-norm beside a straightforward numpy implementation.

    python bench/score_bench.py                 # 550,894 trials, 150,000 x 256 embeddings, 5,994 cohort, top 300
    python bench/score_bench.py --scale 0.05    # a quick look

The data are random (only the sizes matter). Both implementations compute the
same scores (the script checks they agree) on the same machine, in the same run:

- straightforward: the shape of the usual scripts (e.g. WeSpeaker's score_norm.py):
  cohort statistics for the enrolment side and the test side separately, each
  a full (utterances x cohort) score matrix sorted row by row, then a Python
  loop over the trials;
- spkverif: `asnorm` as `spkverif score` runs it: each embedding's statistics
  once, from (4,096 x cohort) blocks with a top-k selection, trials scored in
  vectorised blocks.

A third figure times the whole `spkverif score` stage from archives on disk to
the score file, which adds reading the archive and writing the scores.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spkverif.backends.cosine import CosineScorer
from spkverif.backends.snorm import CohortNormScorer
from spkverif.io.specifiers import ArchiveWriter
from spkverif.stages.score import TRIAL_BLOCK, trial_indices


def make_data(scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    utterances, trials, cohort_size, dim = int(150_000 * scale), int(550_894 * scale), 5_994, 256
    embeddings = rng.standard_normal((utterances, dim), dtype=np.float32)
    cohort = rng.standard_normal((cohort_size, dim), dtype=np.float32)
    keys = np.array([f"id{i // 8:05d}-utt{i:06d}" for i in range(utterances)], dtype=object)
    enroll, test = keys[rng.integers(0, utterances, trials)], keys[rng.integers(0, utterances, trials)]
    return keys, embeddings, cohort, enroll, test


def straightforward_asnorm(keys, embeddings, cohort, enroll, test, top_n: int) -> np.ndarray:
    table = dict(zip(keys, embeddings, strict=True))
    cohort = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)

    def statistics(side_keys):
        names = sorted(set(side_keys))
        matrix = np.array([table[name] for name in names])
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        top = np.sort(matrix @ cohort.T, axis=1)[:, ::-1][:, :top_n]
        return dict(zip(names, range(len(names)), strict=True)), top.mean(axis=1), top.std(axis=1)

    enroll_row, enroll_mean, enroll_std = statistics(enroll)
    test_row, test_mean, test_std = statistics(test)
    scores = np.empty(len(enroll))
    for i, (e, t) in enumerate(zip(enroll, test, strict=True)):
        a, b = table[e], table[t]
        raw = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        j, k = enroll_row[e], test_row[t]
        scores[i] = 0.5 * ((raw - enroll_mean[j]) / enroll_std[j] + (raw - test_mean[k]) / test_std[k])
    return scores


def spkverif_asnorm(keys, embeddings, cohort, enroll, test, top_n: int) -> np.ndarray:
    index_of = {key: i for i, key in enumerate(keys)}
    pair_scorer = CohortNormScorer(cohort, top_n, CosineScorer()).bind(embeddings, embeddings)
    scores = np.empty(len(enroll))
    for start in range(0, len(enroll), TRIAL_BLOCK):
        stop = start + TRIAL_BLOCK
        scores[start:stop] = pair_scorer(
            trial_indices(enroll[start:stop], index_of), trial_indices(test[start:stop], index_of)
        )
    return scores


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def whole_stages(keys, embeddings, cohort, enroll, test, top_n: int) -> tuple[float, float]:
    """Seconds of `score` (archives on disk -> score file) and of `report` on its output (random labels)."""
    from rich.console import Console

    from spkverif.stages.report import report
    from spkverif.stages.score import score

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for name, rows, matrix in (("emb", keys, embeddings), ("cohort", keys[: len(cohort)], cohort)):
            with ArchiveWriter(f"ark,scp:{root / name}.ark,{root / name}.scp") as writer:
                for key, vector in zip(rows, matrix, strict=True):
                    writer.write(key, vector)
        labels = np.random.default_rng(1).random(len(enroll)) < 0.5
        (root / "trials").write_text(
            "".join(f"{e} {t} {'target' if x else 'nontarget'}\n" for e, t, x in zip(enroll, test, labels, strict=True))
        )
        start = time.perf_counter()
        score(
            "asnorm", root / "trials", f"scp:{root}/emb.scp", root / "scores",
            options={"cohort": f"scp:{root}/cohort.scp", "top_n": top_n},
        )  # fmt: skip
        scored = time.perf_counter()
        report([str(root / "trials")], [str(root / "scores")], root / "report", console=Console(quiet=True))
        return scored - start, time.perf_counter() - scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="Fraction of the trials and embeddings (the cohort stays 5,994)."
    )
    parser.add_argument("--top-n", type=int, default=300, help="AS-norm cohort entries per side.")
    parser.add_argument("--skip-baseline", action="store_true", help="Time spkverif only.")
    parser.add_argument("--skip-stages", action="store_true", help="Do not time the score and report stages.")
    arguments = parser.parse_args()
    keys, embeddings, cohort, enroll, test = make_data(arguments.scale)
    top_n = min(arguments.top_n, len(cohort))
    print(
        f"{len(enroll):,} trials, {len(keys):,} x {embeddings.shape[1]} embeddings, cohort {len(cohort):,}, top {top_n}"
    )
    try:
        from threadpoolctl import threadpool_info  # installed with scikit-learn, the test requirements

        print("threads:", ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()))
    except ImportError:
        pass
    ours_seconds, ours = timed(spkverif_asnorm, keys, embeddings, cohort, enroll, test, top_n)
    print(f"spkverif asnorm          {ours_seconds:8.2f} s   (peak memory so far {peak_rss_gib():.2f} GiB)")
    if not arguments.skip_baseline:
        base_seconds, base = timed(straightforward_asnorm, keys, embeddings, cohort, enroll, test, top_n)
        print(f"straightforward numpy    {base_seconds:8.2f} s   (peak memory so far {peak_rss_gib():.2f} GiB)")
        print(f"speed-up                 {base_seconds / ours_seconds:8.2f} x")
        print(f"largest score difference {np.abs(ours - base).max():.2e}")
    if not arguments.skip_stages:
        score_seconds, report_seconds = whole_stages(keys, embeddings, cohort, enroll, test, top_n)
        print(f"spkverif score stage     {score_seconds:8.2f} s   (archives on disk -> score file)")
        print(
            f"spkverif report stage    {report_seconds:8.2f} s   (EER, 3 minDCF, 1,000-replicate bootstrap, DET plot)"
        )


if __name__ == "__main__":
    main()
