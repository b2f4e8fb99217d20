"""`spkverif validate`: check a data directory (and trials) as Kaldi's validate_data_dir.sh does."""

from __future__ import annotations

import click

from spkverif.cli.options import common_options


@click.command("validate")
@click.argument("data_dir", type=click.Path())
@click.option("--trials", type=click.Path(), help="Also check that a trial list names only utterances of DATA_DIR.")
@click.option("--no-audio-check", is_flag=True, help="Do not check that audio files exist.")
@common_options
def command(data_dir: str, trials: str | None, no_audio_check: bool) -> None:
    """Check a data directory the way Kaldi's validate_data_dir.sh does.

    \b
    Example:
      spkverif validate data/test --trials data/test/trials
    """
    from spkverif.stages.validate import validate

    validate(data_dir, trials, check_audio_files=not no_audio_check)
