"""`spkverif score`: trials and embeddings in, a Kaldi score file out (`spkverif.stages.score`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.base.ranges import AT_LEAST_ONE
from spkverif.cli.options import Option, cohort_options, common_options, ranged


def stage() -> Any:
    """The score stage, imported when the command runs or shows its help."""
    from spkverif.stages import score

    return score


def _plda_iterations() -> int:
    from spkverif.backends.plda import EM_ITERATIONS

    return EM_ITERATIONS


@click.command("score")
@click.option("--trials", required=True, type=click.Path(), help="Trial list (Kaldi or VoxCeleb form).")
@click.option(
    "--method",
    cls=Option,
    default=lambda: stage().METHOD,
    registries=("backends",),
    help="Scoring back end (spkverif list backends):",
)
@click.option("--allow-missing", is_flag=True, help="Skip trials whose embeddings are missing, and count them.")
@click.option("--mean", help="cosine/snorm/asnorm: subtract the mean of these vectors first (e.g. scp:train.scp).")
@cohort_options("snorm/asnorm", "asnorm: closest cohort entries per side.")
@click.option("--plda-model", type=click.Path(), help="plda: model file to read, or to write with --train-plda.")
@click.option("--train-plda", help="plda: train on these embeddings first (an rspecifier), then score.")
@click.option("--utt2spk", type=click.Path(), help="plda: speakers of the --train-plda embeddings.")
@click.option(
    "--lda-dim", type=ranged(int, AT_LEAST_ONE), help="plda: reduce dimension by LDA before PLDA [default: no LDA]."
)
@click.option(
    "--plda-iters", cls=Option, shown=_plda_iterations, type=ranged(int, AT_LEAST_ONE), help="plda: EM iterations."
)
@click.argument("archives", nargs=-1, required=True)
@common_options
def command(trials: str, method: str, allow_missing: bool, archives: tuple[str, ...], **backend: Any) -> None:
    """Score trials: ARCHIVES is EMB_RSPECIFIER OUTPUT, or ENROLL_RSPECIFIER TEST_RSPECIFIER OUTPUT.

    \b
    Example:
      spkverif score --method cosine --trials data/test/trials \\
        scp:exp/xvector_aam/embeddings/test.scp exp/xvector_aam/scores/test.cosine
    """
    if len(archives) not in (2, 3):
        raise click.UsageError("expected EMB_RSPECIFIER OUTPUT or ENROLL_RSPECIFIER TEST_RSPECIFIER OUTPUT")
    enroll, test = archives[0], archives[1] if len(archives) == 3 else None
    options = {name: value for name, value in backend.items() if value is not None}
    stage().score(
        method, trials, enroll, archives[-1], test_rspecifier=test, allow_missing=allow_missing, options=options
    )
