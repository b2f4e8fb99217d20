"""`spkverif report`: score files and labelled trials in; a table, report.{json,md}, det.png, training
curves and learned filters out (`spkverif.stages.report`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.base.ranges import NOT_NEGATIVE, OPEN_PROBABILITY
from spkverif.cli.options import Option, cohort_options, common_options, default_of, ranged, seed_option


def stage() -> Any:
    """The report stage, imported when the command runs or shows its help."""
    from spkverif.stages import report

    return report


@click.command("report")
@click.option(
    "--trials",
    "trials",
    multiple=True,
    type=click.Path(),
    help="Labelled trial list (needed with score files): one for every score file, or one per score file in order.",
)
@click.argument("scores", nargs=-1)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Where report.json, report.md and det.png go (each path is logged; earlier ones are replaced with a "
    "warning) [default: the folder of the first score file].",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="A row label per score file, in order; rows sharing a label are runs of one system (seeds), also "
    "summarised as mean ± sd in runs.json.",
)
@click.option(
    "--p-target",
    "p_targets",
    multiple=True,
    type=ranged(float, OPEN_PROBABILITY),
    cls=Option,
    default=lambda: default_of(stage().ReportSettings, "p_targets"),
    help="Priors for minDCF and actDCF.",
)
@click.option("--allow-missing", is_flag=True, help="Evaluate the trials that have scores; count the rest.")
@click.option(
    "--bootstrap",
    "replicates",
    cls=Option,
    default=lambda: default_of(stage().ReportSettings, "bootstrap"),
    type=ranged(int, NOT_NEGATIVE),
    help="Bootstrap replicates for the 95% confidence intervals; 0 for none.",
)
@seed_option("Seed of the bootstrap.", lambda: default_of(stage().ReportSettings, "seed"))
@click.option(
    "--utt2spk",
    type=click.Path(),
    help="Resample enrolment speakers (from this utt2spk) instead of trials for the intervals.",
)
@click.option(
    "--calibrate",
    "calibration_scores",
    multiple=True,
    type=click.Path(),
    help="Held-out score file to fit a logistic-regression calibration on: one, or one per score file.",
)
@click.option(
    "--calibrate-trials",
    "calibration_trials",
    multiple=True,
    type=click.Path(),
    help="Labelled trials of the --calibrate score files: one, or one per score file.",
)
@click.option(
    "--calibration-method",
    cls=Option,
    default=lambda: default_of(stage().CalibrationOptions, "method"),
    registries=("calibrations",),
    help="With --calibrate (qmf needs --durations and --embeddings):",
)
@click.option(
    "--durations", multiple=True, type=click.Path(), help="qmf: utt2dur file(s) covering both sides of all trials."
)
@click.option("--embeddings", multiple=True, help="qmf: rspecifier(s) of the trials' embeddings (norms, cohort means).")
@cohort_options("qmf", "qmf: cohort scores averaged per side, the highest N.")
@click.option(
    "--model",
    "model_path",
    multiple=True,
    type=click.Path(),
    help="The model that made the scores (any kind extract takes; repeated for an ensemble, in extract's "
    "order); its fingerprint goes into --save-calibration.",
)
@click.option(
    "--save-calibration",
    type=click.Path(dir_okay=False),
    help="Write the fitted calibration (JSON) for `spkverif verify --calibration`.",
)
@click.option("--det", "det_path", type=click.Path(), help="Where the DET plot goes [default: OUT_DIR/det.png].")
@click.option("--no-det", is_flag=True, help="Do not draw the DET plot.")
@click.option(
    "--training",
    "training",
    multiple=True,
    type=click.Path(),
    help="Experiment dir: draw its training curves to training.png.",
)
@click.option(
    "--filters",
    "filters_model",
    type=click.Path(),
    help="SincNet model file: plot its learned filters to filters.png (in --out-dir, default beside MODEL).",
)
@common_options
def command(
    trials: tuple[str, ...],
    scores: tuple[str, ...],
    p_targets: tuple[float, ...],
    allow_missing: bool,
    replicates: int,
    seed: int,
    utt2spk: str | None,
    cohort: str | None,
    cohort_utt2spk: str | None,
    top_n: int | None,
    no_det: bool,
    **outputs: Any,
) -> None:
    """EER (with a confidence interval), minDCF, actDCF and Cllr of each score file: a table, report.{json,md}
    and a DET plot; training curves; learned SincNet filters.

    \b
    Example:
      spkverif report --trials data/test/trials --utt2spk data/test/utt2spk --out-dir exp \\
        exp/xvector_aam/scores/test.cosine exp/xvector_aam/scores/test.asnorm
    """
    if not scores and not outputs["training"] and not outputs["filters_model"]:
        raise click.UsageError("give score files (with --trials), --training EXP or --filters MODEL")
    if scores and not trials:
        raise click.UsageError("score files need --trials")
    if scores and cohort is None and (cohort_utt2spk is not None or top_n is not None):
        raise click.UsageError("--cohort-utt2spk and --top-n go with --cohort")
    report = stage()
    settings = report.ReportSettings(tuple(p_targets), allow_missing, replicates, seed, utt2spk)
    report.run(
        scores, trials, settings=settings, cohort=cohort, cohort_utt2spk=cohort_utt2spk, top_n=top_n,
        plot=not no_det, **outputs,
    )  # fmt: skip
