"""`spkverif verify`: same speaker? Recordings in, a score and a decision out (`spkverif.stages.verify`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.base.ranges import COSINE, OPEN_PROBABILITY
from spkverif.cli.options import (
    Option,
    channel_option,
    cohort_options,
    common_options,
    device_option,
    model_files_option,
    ranged,
    resample_option,
)


def stage() -> Any:
    """The verify stage, imported when the command runs or shows its help."""
    from spkverif.stages import verify

    return verify


@click.command("verify")
@model_files_option("Model file, TorchScript or ONNX export; repeated, the models as one ensemble (as extract's).")
@click.option("--calibration", type=click.Path(), help="Calibration from `report --save-calibration` (LLR, decision).")
@click.option(
    "--threshold",
    type=ranged(float, COSINE),
    help="Without a calibration: accept when the cosine score is at least this.",
)
@click.option(
    "--p-target",
    type=ranged(float, OPEN_PROBABILITY),
    cls=Option,
    shown=lambda: stage().APPLICATION_P_TARGET,  # applied to calibrated LLRs only, never beside --fa-rate
    help="With --calibration: prior of a target trial; accept when the LLR reaches its Bayes threshold "
    "(0.5: claims as likely genuine as not, LLR >= 0; evaluations use 0.01).",
)
@click.option(
    "--fa-rate",
    type=ranged(float, OPEN_PROBABILITY),
    help="With --calibration: decide at this false-accept rate (on the calibration's trials) instead.",
)
@click.option("--pairs", type=click.Path(), help="File of `ENROLL... TEST` lines, instead of FILES.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the results here [default: stdout].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pair instead of the table.")
@resample_option
@channel_option
@device_option
@cohort_options("a calibration with cohort measures")
@click.argument("files", nargs=-1)
@common_options
def command(
    model_path: tuple[str, ...],
    calibration: str | None,
    threshold: float | None,
    p_target: float | None,
    fa_rate: float | None,
    pairs: str | None,
    out: str | None,
    as_json: bool,
    resample: bool,
    channel: int | None,
    device: str,
    cohort: str | None,
    cohort_utt2spk: str | None,
    files: tuple[str, ...],
) -> None:
    """Same speaker? FILES is ENROLL... TEST: the enrolment recordings (averaged) and the test recording.

    \b
    Prints a header line, then `ENROLL TEST score [llr] [decision]`. The score is the
    cosine similarity of the two embeddings (-1 to 1, higher: more alike). It decides
    with --threshold T on the score, or with --calibration at --p-target. A calibration
    comes from your own labelled pairs, scored and then fitted in one command:
      spkverif report --trials pairs.trials --calibrate pairs.cosine \\
        --calibrate-trials pairs.trials --model M --save-calibration cal.json pairs.cosine

    \b
    Examples:
      spkverif verify --model model.pt --threshold 0.5 alice1.wav alice2.wav
      spkverif verify --model model.onnx --calibration cal.json --json enrol1.wav enrol2.wav test.wav
    """
    if (pairs is None) == (len(files) == 0):
        raise click.UsageError("give ENROLL... TEST files or --pairs FILE (not both)")
    if pairs is None and len(files) < 2:
        raise click.UsageError("give at least one enrolment file and one test file")
    verify = stage()
    todo = verify.read_pairs(pairs) if pairs is not None else [verify.Pair(tuple(files[:-1]), files[-1])]
    verify.verify(
        model_path, todo, calibration, p_target, fa_rate, resample, device, out, (cohort, cohort_utt2spk), channel,
        threshold, as_json,
    )  # fmt: skip
