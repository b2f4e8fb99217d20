"""`spkverif extract`: audio in, embeddings out (`spkverif.stages.extract`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.base.ranges import AT_LEAST_ONE, POSITIVE
from spkverif.cli.options import (
    Option,
    channel_option,
    common_options,
    device_option,
    model_files_option,
    ranged,
    resample_option,
)


def stage() -> Any:
    """The extract stage, imported when the command runs or shows its help."""
    from spkverif.stages import extract

    return extract


@click.command("extract")
@model_files_option(
    "Model file (models/final.pt), checkpoint, or a TorchScript or ONNX file from `spkverif export`; "
    "told apart by content. Repeated: the models as one ensemble (their length-normalised embeddings "
    "concatenated, so a cosine score is the mean of theirs). Kinds:",
    cls=Option,
    registries=("model-files",),
)
@click.argument("rspecifier")
@click.argument("wspecifier")
@device_option
@click.option(
    "--batch-size",
    cls=Option,
    default=lambda: stage().BATCH_SIZE,
    type=ranged(int, AT_LEAST_ONE),
    help="Utterances of equal length, or windows, per forward pass.",
)
@click.option("--segments", type=click.Path(), help="Kaldi segments file applied to an scp: input.")
@resample_option
@click.option(
    "--window",
    type=ranged(float, POSITIVE),
    metavar="SEC",
    help="Average the embeddings of SEC-long windows instead of embedding whole utterances (the paper: 3).",
)
@click.option(
    "--step",
    cls=Option,
    shown=lambda: f"{stage().DEFAULT_STEP_SECONDS:g} with --window",
    type=ranged(float, POSITIVE),
    metavar="SEC",
    help="Distance between window starts.",
)
@channel_option
@common_options
def command(
    model_path: tuple[str, ...],
    rspecifier: str,
    wspecifier: str,
    device: str,
    batch_size: int,
    segments: str | None,
    resample: bool,
    window: float | None,
    step: float | None,
    channel: int | None,
) -> None:
    """Whole-utterance embeddings, or the mean over sliding windows (--window).

    RSPECIFIER is scp:wav.scp, ark:wav.ark or a data directory; WSPECIFIER e.g.
    ark,scp:emb.ark,emb.scp or ark:- for a pipe.

    \b
    Example:
      spkverif extract --model exp/xvector_aam/models/final.pt scp:data/test/wav.scp \\
        ark,scp:exp/xvector_aam/embeddings/test.ark,exp/xvector_aam/embeddings/test.scp
    """
    stage().extract(
        model_path,
        rspecifier,
        wspecifier,
        device,
        batch_size,
        segments=segments,
        allow_resample=resample,
        window=window,
        step=step,
        channel=channel,
    )
