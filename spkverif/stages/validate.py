"""The `validate` command: every problem of a data directory (and trials), then a verdict."""

from __future__ import annotations

import logging
from pathlib import Path

from spkverif.base.errors import SpkverifError
from spkverif.io.datadir import validate_data_dir
from spkverif.io.tables import read_rest_of_line
from spkverif.io.trials import read_trials, validate_trials

logger = logging.getLogger(__name__)


def validate(data_dir: str | Path, trials: str | Path | None = None, check_audio_files: bool = True) -> None:
    """Log each problem on its own line; raise one error summarising them."""
    problems = validate_data_dir(data_dir, check_audio_files=check_audio_files)
    if trials is not None and not problems:
        known = set(read_rest_of_line(Path(data_dir) / "utt2spk"))
        problems += validate_trials(read_trials(trials), known, str(data_dir))
    for problem in problems:
        logger.error("%s", problem)
    if problems:
        raise SpkverifError(f"{len(problems)} problem(s) found", data_dir)
    logger.info("%s is a valid data directory", data_dir)
