"""Cosine, S-norm and AS-norm against direct loop implementations; scoring in blocks."""

from __future__ import annotations

import numpy as np
import pytest

from spkverif.backends import BACKENDS
from spkverif.backends.base import score_pairs
from spkverif.backends.cosine import CosineScorer
from spkverif.backends.plda import PldaModel
from spkverif.backends.snorm import CohortNormScorer, load_cohort
from spkverif.base.errors import SpkverifError
from spkverif.io.specifiers import ArchiveWriter
from spkverif.stages.score import score


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _loop_asnorm(enroll, test, cohort, pairs, top_n: int) -> list[float]:
    """AS-norm written out trial by trial, every cohort score recomputed, in float64."""
    normalised = []
    for e, t in pairs:
        raw = _cosine(enroll[e], test[t])
        sides = []
        for side in (enroll[e], test[t]):
            cohort_scores = sorted((_cosine(side, c) for c in cohort), reverse=True)[:top_n]
            sides.append((raw - np.mean(cohort_scores)) / np.std(cohort_scores))
        normalised.append(sum(sides) / 2)
    return normalised


@pytest.mark.parametrize("top_n", [5, 17, 40])
def test_asnorm_matches_a_direct_loop(top_n: int) -> None:
    rng = np.random.default_rng(top_n)
    enroll, test, cohort = rng.normal(size=(9, 8)), rng.normal(size=(7, 8)), rng.normal(size=(40, 8))
    pairs = [(rng.integers(9), rng.integers(7)) for _ in range(30)]
    scorer = CohortNormScorer(cohort, top_n, CosineScorer(), block=4)
    found = score_pairs(scorer, enroll, test, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert found == pytest.approx(_loop_asnorm(enroll, test, cohort, pairs, top_n), abs=1e-5)


def test_snorm_is_asnorm_over_the_whole_cohort() -> None:
    rng = np.random.default_rng(0)
    embeddings, cohort = rng.normal(size=(10, 6)), rng.normal(size=(25, 6))
    index = np.arange(10)
    whole = score_pairs(CohortNormScorer(cohort, None, CosineScorer()), embeddings, embeddings, index, index[::-1])
    assert whole == pytest.approx(
        _loop_asnorm(embeddings, embeddings, cohort, list(zip(index, index[::-1], strict=True)), 25), abs=1e-5
    )


def test_cosine_subtracts_the_mean_first() -> None:
    rng = np.random.default_rng(1)
    embeddings, mean = rng.normal(size=(6, 5)) + 2, np.full(5, 2.0)
    found = score_pairs(CosineScorer(mean), embeddings, embeddings, np.arange(6), np.arange(6)[::-1])
    expected = [_cosine(embeddings[i] - mean, embeddings[5 - i] - mean) for i in range(6)]
    assert found == pytest.approx(expected, abs=1e-6)


def _write(path, vectors: dict[str, np.ndarray]) -> str:
    with ArchiveWriter(f"ark,scp:{path}.ark,{path}.scp") as writer:
        for key, vector in vectors.items():
            writer.write(key, vector.astype(np.float32))
    return f"scp:{path}.scp"


def test_cohort_averaged_per_speaker(tmp_path) -> None:
    rng = np.random.default_rng(2)
    vectors = {f"s{s}-u{u}": rng.normal(size=4) for s in range(3) for u in range(4)}
    (tmp_path / "utt2spk").write_text("".join(f"{key} {key.split('-')[0]}\n" for key in vectors))
    cohort = load_cohort(_write(tmp_path / "c", vectors), str(tmp_path / "utt2spk"), CosineScorer())
    for s in range(3):
        unit = [v / np.linalg.norm(v) for k, v in vectors.items() if k.startswith(f"s{s}-")]
        assert cohort[s] == pytest.approx(np.mean(unit, axis=0), abs=1e-6)
    (tmp_path / "utt2spk").write_text("s0-u0 s0\n")
    with pytest.raises(SpkverifError, match="11 of the 12 cohort embeddings have no speaker"):
        load_cohort(_write(tmp_path / "c", vectors), str(tmp_path / "utt2spk"), CosineScorer())


def test_options_are_checked(tmp_path) -> None:
    cohort = _write(tmp_path / "c", {f"u{i}": np.ones(3) * i for i in range(1, 4)})
    with pytest.raises(SpkverifError, match="--top-n 300 must be between 1 and the cohort's size, 3"):
        BACKENDS.build("asnorm", cohort=cohort)
    with pytest.raises(SpkverifError, match="has no option 'cohort'"):
        BACKENDS.build("cosine", cohort=cohort)
    with pytest.raises(SpkverifError, match="needs a cohort"):
        BACKENDS.build("snorm")
    with pytest.raises(SpkverifError, match="needs --plda-model"):
        BACKENDS.build("plda")


def _speaker_set(directory, seed: int, stride: int) -> tuple[list[str], str]:
    """40 embeddings of 8 speakers in DIR/e.scp, DIR/utt2spk, and 40 unlabelled trials in DIR/trials."""
    rng = np.random.default_rng(seed)
    vectors = {f"s{s}-u{u}": rng.normal(size=6) + s for s in range(8) for u in range(5)}
    (directory / "utt2spk").write_text("".join(f"{key} {key.split('-')[0]}\n" for key in vectors))
    keys = list(vectors)
    (directory / "trials").write_text("".join(f"{keys[i]} {keys[(stride * i) % 40]}\n" for i in range(40)))
    return keys, _write(directory / "e", vectors)


@pytest.mark.parametrize("method", ["cosine", "asnorm", "plda"])
def test_scoring_in_small_blocks_gives_the_same_file(tmp_path, method: str) -> None:
    keys, archive = _speaker_set(tmp_path, 3, 7)
    options = {
        "cosine": {},
        "asnorm": {"cohort": archive, "top_n": 10},
        "plda": {"plda_model": str(tmp_path / "plda.npz"), "train_plda": archive, "utt2spk": str(tmp_path / "utt2spk")},
    }[method]
    outputs = []
    for block_size in (7, 1000):
        output = tmp_path / f"scores.{block_size}"
        result = score(method, tmp_path / "trials", archive, output, options=options, block_size=block_size)
        assert result == {"trials": 40, "missing": 0}
        outputs.append([line.split() for line in output.read_text().splitlines()])
    assert (
        [row[:2] for row in outputs[0]]
        == [row[:2] for row in outputs[1]]
        == [[keys[i], keys[(7 * i) % 40]] for i in range(40)]
    )
    first, second = (np.array([float(row[2]) for row in rows]) for rows in outputs)
    # Cohort statistics come from float32 products whose rounding can depend on how many rows share a block.
    assert first == pytest.approx(second, rel=1e-5, abs=1e-6)


def test_cli_flags_reach_the_back_ends(run_cli, tmp_path) -> None:
    _, archive = _speaker_set(tmp_path, 4, 3)
    common = ["-q", "--trials", tmp_path / "trials", archive]
    model = tmp_path / "plda.npz"
    trained = run_cli(
        "score", "--method", "plda", "--train-plda", archive, "--utt2spk", tmp_path / "utt2spk",
        "--lda-dim", "3", "--plda-model", model, *common, tmp_path / "trained",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    assert PldaModel.load(model).lda.shape[1] == 3
    reused = run_cli("score", "--method", "plda", "--plda-model", model, *common, tmp_path / "reused")
    assert reused.exit_code == 0 and (tmp_path / "reused").read_text() == (tmp_path / "trained").read_text()
    normalised = run_cli(
        "score", "--method", "asnorm", "--cohort", archive, "--cohort-utt2spk", tmp_path / "utt2spk",
        "--top-n", "4", "--mean", archive, *common, tmp_path / "asnorm",
    )  # fmt: skip
    assert normalised.exit_code == 0, normalised.stderr
    assert len((tmp_path / "asnorm").read_text().splitlines()) == 40
    wrong = run_cli("score", "--method", "cosine", "--cohort", archive, *common, tmp_path / "x")
    assert wrong.exit_code == 1 and "has no option 'cohort'" in wrong.stderr and not (tmp_path / "x").exists()
