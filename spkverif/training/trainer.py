"""The training loop: speaker-balanced chunks -> embedding network -> loss head.

The same code runs on one CPU, one GPU, or under `torchrun` on many (DDP). A step
is made of micro-batches ("parts"): rank r of a world of W processes, with G
steps of gradient accumulation, builds parts r*G .. r*G+G-1 of every step. So
`torchrun --nproc_per_node N` and a single process with `--grad-accum N` see the
same micro-batches, average the same gradients and the same BatchNorm statistics,
and end with the same weights (up to the order of floating-point sums).

Writes into the experiment directory:
  config.yaml           the resolved configuration
  train_log.jsonl       one JSON record per logged step, per epoch, per validation
  models/epoch_NNNN.pt  full training state after each epoch (resumable)
  models/step_NNNNNNNN.pt  the newest mid-epoch state, with --checkpoint-every
  models/best.pt        the network with the best validation EER, with --valid-trials
  models/final.pt       the network alone (averaged over the last N epochs with
                        --average N): what `extract` loads
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.base.memory import keep_freed_memory
from spkverif.base.progress import ProgressBar
from spkverif.config import TrainConfig, read_init
from spkverif.models import count_parameters
from spkverif.models.files import MODEL_FORMAT, STATE_FORMAT, load_weights
from spkverif.models.legacy import upgrade_spec
from spkverif.training.build import build_components, build_loader, utterance_lengths
from spkverif.training.checkpoint import (
    Checkpointer,
    GlobalRng,
    Record,
    average_epochs,
    model_payload,
    save_atomic,
)
from spkverif.training.dataset import Batch
from spkverif.training.distributed import resolve_device, setup_distributed
from spkverif.training.log import Progress, Throughput, TrainingLog
from spkverif.training.parts import base_lr
from spkverif.training.preflight import check_config
from spkverif.training.sampler import SpeakerIndex
from spkverif.training.step import StepResult, TrainStep

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "resolve_device"]


class Trainer:
    """The training loop over parts built by `build_components`, saved by a `Checkpointer`,
    logged by a `TrainingLog`; `run` trains to `training.epochs` and writes final.pt."""

    def __init__(self, config: TrainConfig, data_dir: str | Path, exp_dir: str | Path):
        check_config(config)
        keep_freed_memory()  # the same activations every step: reused, not faulted in again (base/memory.py)
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.models_dir = self.exp_dir / "models"
        self.context = setup_distributed(config.training.device)
        self.device = self.context.device
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.parts = build_components(config, data_dir, self.context)
        self.steps_per_epoch = config.training.batches_per_epoch
        rank_parts = config.training.grad_accum
        self.micro_batches = tuple(self.context.rank * rank_parts + a for a in range(rank_parts))
        self.progress = Progress(self.steps_per_epoch)
        self.log = TrainingLog(self.exp_dir / "train_log.jsonl", self.context.is_main)
        self.checkpointer = self._checkpointer()
        self.train_step = TrainStep(config, self.parts, self.context, self.progress, self.checkpointer)
        self.first_steps: list[float] = []  # with training.compile, the seconds of this process's first two steps

    def _checkpointer(self) -> Checkpointer:
        """The named parts of a checkpoint, in the order (and under the keys) of every release so far."""
        parts = self.parts
        checkpointer = Checkpointer(self.models_dir, self.steps_per_epoch)
        checkpointer.add(
            "model", Record(lambda: parts.model.spec, "the checkpoint holds another network", upgrade=upgrade_spec)
        )
        checkpointer.add("model_state", parts.model)
        checkpointer.add("head_state", parts.head)
        checkpointer.add("optimizer", parts.optimizer)
        checkpointer.add("scheduler", parts.scheduler)
        checkpointer.add("scaler", parts.scaler)
        checkpointer.add("progress", self.progress, keys=Progress.KEYS)
        checkpointer.add("rng", GlobalRng())
        checkpointer.add("config", Record(self.config.to_dict))
        checkpointer.add(
            "speakers",
            Record(lambda: parts.data.speakers, "the checkpoint was trained on other speakers than --data holds"),
        )
        return checkpointer

    @property
    def num_classes(self) -> int:
        return len(self.parts.data.speakers) * len(self.parts.speeds)

    def describe(self) -> dict[str, Any]:
        """What is trained on what, for the log's start record and the dry run."""
        options = self.config.training
        return {
            "model": self.config.model.name,
            "model_parameters": count_parameters(self.parts.model),
            "loss": self.config.loss.name,
            "loss_parameters": count_parameters(self.parts.head),
            "speakers": len(self.parts.data.speakers),
            "classes": self.num_classes,
            "utterances": len(self.parts.data.utterances),
            "device": str(self.device),
            "world_size": self.context.world_size,
            "chunks_per_step": options.speakers_per_batch
            * options.utts_per_speaker
            * self.context.world_size
            * options.grad_accum,
        }

    # checkpoints -------------------------------------------------------------

    def save_state(self) -> Path | None:
        """Everything needed to continue bit for bit; written by rank 0 only."""
        if not self.context.is_main:
            return None
        if self.progress.step == 0:
            return self.checkpointer.save(f"epoch_{self.progress.epoch:04d}.pt")
        return self.checkpointer.save(f"step_{self.progress.global_step:08d}.pt")

    def latest_checkpoint(self) -> Path | None:
        return self.checkpointer.latest()

    def resume(self) -> None:
        """Continue from the newest checkpoint (if any), the log cut back to it."""
        path = self.latest_checkpoint()
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.models_dir)
            return
        self.checkpointer.load(path)
        self.log.truncate(self.progress.global_step)
        logger.info("resumed from %s at epoch %d, step %d", path, self.progress.epoch + 1, self.progress.step)

    def initialise(self, path: str | Path) -> None:
        """Start from the network of `path`, a model file (train's final.pt or best.pt, `spkverif
        import`'s output) or a training checkpoint (an `epoch_NNNN.pt` of another run), whose
        network `config.apply_init` made this run's. The loss head is new, for this run's
        speakers, unless `path` is a training checkpoint on the same speakers whose head fits
        this run's (same loss, same classes): then it is taken too, the large-margin stage of
        WeSpeaker and 3D-Speaker (Thienpondt et al., 2021: the same network, longer chunks, a
        larger margin, a small learning rate). No optimiser, schedule or position is taken:
        this run's own schedule starts afresh.

        Raises `SpkverifError` naming `path` when it is not a model file or training checkpoint,
        or its weights do not fit the network built (`training.init: the checkpoint holds
        another network: ...`).
        """
        payload = read_init(path)
        state = payload["state_dict" if payload["format"] == MODEL_FORMAT else "model_state"]
        if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
            raise SpkverifError("training.init: the file's weights are not a dictionary of tensors", path)
        load_weights(self.parts.model, state, path, "training.init: the checkpoint holds another network")
        head = self.parts.head
        same_speakers = payload["format"] == STATE_FORMAT and payload.get("speakers") == list(self.parts.data.speakers)
        if same_speakers and _fits(head, payload.get("head_state")):
            load_weights(head, payload["head_state"], path, "training.init: the loss head does not fit")
            logger.info("network and loss head initialised from %s", path)
            return
        if same_speakers:
            logger.warning("%s: its loss head is not this run's (%s, %d classes): the head starts new", path,
                           self.config.loss.name, self.num_classes)  # fmt: skip
        logger.info("network initialised from %s; a new %s head for %d classes", path, self.config.loss.name,
                    self.num_classes)  # fmt: skip

    # the run -----------------------------------------------------------------

    def run(self) -> Path:
        """Train from where `progress` stands to `training.epochs`; returns final.pt's path."""
        data = self.parts.data
        index = SpeakerIndex.build(
            data.utt2spk, utterance_lengths(data, self.parts.reader, self.config.data.sample_rate)
        )
        if self.context.is_main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.exp_dir / "config.yaml")
            if self.progress.global_step == 0:
                self.log.start({"event": "start", "global_step": 0, **self.describe()})
        self.context.barrier()
        if self.progress.epoch < self.config.training.epochs:
            start = (self.progress.epoch, self.progress.step)
            iterator = iter(build_loader(self.config, self.parts, index, self.context, self.micro_batches, start))
            while self.progress.epoch < self.config.training.epochs:
                self._run_epoch(iterator)
        final = self.models_dir / "final.pt"
        if self.context.is_main:
            network = average_epochs(self.models_dir, self.parts.model, self.config.training.average_last)
            save_atomic(model_payload(network, {"config": self.config.to_dict()}), final)
            logger.info("final model: %s", final)
        self.context.barrier()
        return final

    def _run_epoch(self, iterator: Iterator[Batch]) -> None:
        """Steps to the end of the epoch, then its record, validation and checkpoint."""
        self.parts.network.train()
        self.progress.start_epoch()
        window = Throughput()
        epoch_start = time.monotonic()
        epochs = self.config.training.epochs
        with ProgressBar(self.steps_per_epoch, f"epoch {self.progress.epoch + 1}/{epochs}", unit="batch") as bar:
            bar.completed = self.progress.step
            while self.progress.step < self.steps_per_epoch:
                wait_start = time.monotonic()
                batches = [next(iterator) for _ in self.micro_batches]
                window.waited(time.monotonic() - wait_start)
                margin = self._schedule_margin()
                step_start = time.monotonic()
                result = self.train_step(batches)
                self._time_compilation(time.monotonic() - step_start)
                self._count(result, sum(len(batch.labels) for batch in batches) * self.context.world_size, window)
                self.progress.step += 1
                self._report_step(result, margin, window, bar)
                self._checkpoint_mid_epoch()
        self._end_epoch(time.monotonic() - epoch_start)

    def _time_compilation(self, seconds: float) -> None:
        """With `training.compile`, log once what compiling cost this process: its first step's seconds
        less its second's (`{"event": "compiled", "seconds": ...}`; run.sh's budget projection reads it)."""
        if not self.config.training.compile or len(self.first_steps) >= 2:
            return
        self.first_steps.append(seconds)
        if len(self.first_steps) == 2:
            compiling = max(0.0, self.first_steps[0] - self.first_steps[1])
            self.log.write({"event": "compiled", "global_step": self.progress.global_step, "seconds": compiling})
            logger.info("compiling the encoder took %.0f s", compiling)

    def _count(self, result: StepResult, samples: int, window: Throughput) -> None:
        """Add a step's loss and accuracy to the epoch's means (or count it skipped)."""
        window.samples += samples
        if result is None:
            self.progress.skipped += 1
            return
        loss, accuracy = result
        self.progress.loss_mean.add(loss, samples)
        if accuracy is not None:
            self.progress.accuracy_mean.add(accuracy, samples)

    def _report_step(self, result: StepResult, margin: dict[str, float], window: Throughput, bar: ProgressBar) -> None:
        """Advance the progress bar; every `log_every` steps (and at an epoch's end) log a step record."""
        progress = self.progress
        lr = base_lr(self.parts.optimizer)
        figures = window.figures()
        shown = {"acc": progress.accuracy} if progress.accuracy is not None else {}
        bar.advance(1, loss=progress.loss_mean.value, **shown, lr=lr, **margin, samples_s=figures[0])
        if progress.step % self.config.training.log_every and progress.step != self.steps_per_epoch:
            return
        self.log.write(progress.step_record(result[0] if result else None, lr, margin, figures))
        window.reset()

    def _checkpoint_mid_epoch(self) -> None:
        """With `training.checkpoint_every N`, a step_*.pt every N steps inside an epoch."""
        every = self.config.training.checkpoint_every
        if every and self.progress.step % every == 0 and self.progress.step < self.steps_per_epoch:
            self.save_state()

    def _end_epoch(self, seconds: float) -> None:
        """Close the epoch: its record, validation, the epoch checkpoint."""
        progress = self.progress
        progress.epoch += 1
        progress.step = 0
        self.log.write(progress.epoch_record(base_lr(self.parts.optimizer), seconds))
        self._validate()
        self.save_state()
        self.context.barrier()

    def _schedule_margin(self) -> dict[str, float]:
        """Set the margin for the coming step; {"margin": m} for the log, {} for a loss without one."""
        if self.parts.margin_schedule is None:
            return {}
        margin = self.parts.margin_schedule(self.progress.global_step)
        self.parts.head.set_margin(margin)
        return {"margin": margin}

    def _validate(self) -> None:
        """EER on the validation trials; the best network so far goes to best.pt."""
        if self.parts.validator is None:
            return
        model, epoch = self.parts.model, self.progress.epoch
        result = self.parts.validator.evaluate(model, self.device)
        improved = result["eer"] < self.progress.best_eer
        if improved:
            self.progress.best_eer = result["eer"]
            payload = model_payload(model, {"config": self.config.to_dict(), "epoch": epoch})
            save_atomic(payload, self.models_dir / "best.pt")
        self.log.write({"event": "valid", "epoch": epoch, "global_step": self.progress.global_step, "best": improved,
                        **result})  # fmt: skip
        logger.info("epoch %d validation: EER %.2f%%%s", epoch, 100 * result["eer"], " (best)" if improved else "")


def _fits(module: torch.nn.Module, state: object) -> bool:
    """Whether `state` has exactly `module`'s keys, each tensor of the same shape."""
    own = module.state_dict()
    return (
        isinstance(state, dict)
        and state.keys() == own.keys()
        and all(isinstance(state[key], torch.Tensor) and state[key].shape == own[key].shape for key in own)
    )
