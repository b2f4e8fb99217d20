"""The `train` stage: a configuration and a data directory -> an experiment directory.

The configuration (`spkverif.config`: a YAML file, `train`'s flags and `--set`
overrides) says everything; `Trainer` (`spkverif.training.trainer`) runs the loop on one
CPU, one GPU or under `torchrun`, and writes config.yaml, train_log.jsonl and models/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.config import TrainConfig
from spkverif.training.distributed import shutdown_distributed
from spkverif.training.trainer import Trainer

logger = logging.getLogger(__name__)


def train(
    config: TrainConfig, data_dir: str | Path, exp_dir: str | Path, resume: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Run the train stage; with `dry_run`, only build everything and describe it.

    With `training.init` (`--init`), a run that starts (no checkpoint to resume from) takes
    that file's network (`Trainer.initialise`); with `resume` and a checkpoint, resuming wins
    and the file is not read again for weights.

    Raises `SpkverifError` for bad settings or data, checkpoints in `exp_dir` without
    `resume`, and a non-finite loss without --skip-nonfinite.
    """
    exp_dir = Path(exp_dir)
    trainer: Trainer | None = None
    try:
        trainer = Trainer(config, data_dir, exp_dir)
        description = trainer.describe()
        if dry_run:
            return description
        if trainer.latest_checkpoint() is not None and not resume:
            raise SpkverifError(
                "already holds checkpoints; pass --resume to continue, or choose another --exp", exp_dir
            )
        if resume:
            trainer.resume()
        if config.training.init and trainer.progress.global_step == 0:
            trainer.initialise(config.training.init)
        logger.info(
            "training %s (%.2fM parameters) with %s on %d speakers (%d classes), %d utterances, "
            "device %s, %d process(es), %d chunks a step",
            description["model"], description["model_parameters"] / 1e6, description["loss"],
            description["speakers"], description["classes"], description["utterances"],
            description["device"], description["world_size"], description["chunks_per_step"],
        )  # fmt: skip
        final = trainer.run()
        description["final_model"] = str(final)
        return description
    finally:
        if trainer is not None:
            trainer.parts.ddp = trainer.parts.network  # DDP's reducer holds the process group: release it first
        del trainer
        shutdown_distributed()
