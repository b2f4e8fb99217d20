"""`spkverif data ...`: Kaldi's data-directory utilities (`spkverif.stages.data`, `spkverif.stages.decode`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.base.ranges import AT_LEAST_ONE
from spkverif.cli.options import Option, common_options, decode_options, default_of, jobs_option, ranged, seed_option


def stage() -> Any:
    """The data stage, imported when a command runs or shows its help."""
    from spkverif.stages import data

    return data


@click.group("data")
def command() -> None:
    """Kaldi's data-directory utilities (utils/*_data*.sh): combine, subset, fix, copy, durations, decode.

    Each writes a whole, valid, C-sorted data directory or nothing.

    \b
    Example:
      spkverif data subset data/train data/cohort --per-spk 3
    """


@command.command("combine")
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@common_options
def combine_command(out: str, sources: tuple[str, ...]) -> None:
    """OUT := the union of SOURCES (utils/combine_data.sh); clashing ids are an error.

    \b
    Example:
      spkverif data combine data/train data/train_clean_100 data/mini_train
    """
    stage().combine_data_dirs(list(sources), out)


@command.command("subset")
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--utt-list", type=click.Path(dir_okay=False), help="Keep the utterances listed (first field per line).")
@click.option("--spk-list", type=click.Path(dir_okay=False), help="Keep every utterance of the speakers listed.")
@click.option("--first", type=ranged(int, AT_LEAST_ONE), help="Keep the first N utterances (C order).")
@click.option("--per-spk", type=ranged(int, AT_LEAST_ONE), help="Keep the first K utterances of each speaker.")
@click.option("--random", type=ranged(int, AT_LEAST_ONE), help="Keep N utterances drawn at random (with --seed).")
@seed_option("Seed of --random.", lambda: default_of(stage().subset_data_dir, "seed"))
@common_options
def subset_command(source: str, out: str, **ways: Any) -> None:
    """OUT := part of SOURCE (utils/subset_data_dir.sh); give exactly one way to choose.

    \b
    Example:
      spkverif data subset data/train data/cohort --per-spk 3
    """
    stage().subset_data_dir(source, out, **ways)


@command.command("fix")
@click.argument("data_dir", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Write the fixed copy here [default: in place].")
@common_options
def fix_command(data_dir: str, out: str | None) -> None:
    """Keep the utterances every file knows, sort, rebuild spk2utt (utils/fix_data_dir.sh).

    \b
    Example:
      spkverif data fix data/train
    """
    stage().fix_data_dir(data_dir, out)


@command.command("copy")
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--spk-prefix", cls=Option, default=lambda: default_of(stage().copy_data_dir, "spk_prefix"),
    show_default=False, help="Prefix every speaker id.",
)  # fmt: skip
@click.option(
    "--utt-prefix", cls=Option, default=lambda: default_of(stage().copy_data_dir, "utt_prefix"),
    show_default=False, help="Prefix every utterance and recording id.",
)  # fmt: skip
@common_options
def copy_command(source: str, out: str, spk_prefix: str, utt_prefix: str) -> None:
    """OUT := SOURCE with prefixed ids (utils/copy_data_dir.sh), so clashing corpora combine.

    \b
    Example:
      spkverif data copy data/mini/train data/mini_train --spk-prefix mini- --utt-prefix mini-
    """
    stage().copy_data_dir(source, out, spk_prefix=spk_prefix, utt_prefix=utt_prefix)


@command.command("durations")
@click.argument("data_dir", type=click.Path())
@click.option(
    "--sample-rate",
    type=ranged(int, AT_LEAST_ONE),
    cls=Option,
    default=lambda: default_of(stage().write_durations, "sample_rate"),
    help="Rate lengths count at (Hz).",
)
@click.option("--force", is_flag=True, help="Measure again even when utt2dur covers every utterance.")
@common_options
def durations_command(data_dir: str, sample_rate: int, force: bool) -> None:
    """Write DATA_DIR/utt2dur from the audio (utils/data/get_utt2dur.sh); `train` reads it instead of measuring.

    \b
    Example:
      spkverif data durations data/train
    """
    stage().write_durations(data_dir, sample_rate, force)


@command.command("decode")
@click.argument("data_dir", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--audio-dir", required=True, type=click.Path(file_okay=False), help="Where the decoded files go.")
@decode_options
@jobs_option("Decoding processes.")
@common_options
def decode_command(data_dir: str, out: str, audio_dir: str, jobs: int, **decoding: Any) -> None:
    """Decode every recording of DATA_DIR (files, `cmd |` pipes, arks) once into AUDIO_DIR as
    16 kHz mono files; OUT is DATA_DIR naming them, with utt2dur of the decoded lengths.

    \b
    Example:
      spkverif data decode data/vox2_dev data/vox2_dev_wav --audio-dir audio/vox2 --jobs 8
    """
    from spkverif.stages.decode import DecodeOptions, decode, parse_part

    part = parse_part(decoding.pop("part"))
    decode(data_dir, out, audio_dir, DecodeOptions(jobs=jobs, part=part, **decoding))
