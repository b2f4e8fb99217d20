"""The `train` stage: speaker-balanced chunks -> embedding network -> loss head.

Writes into the experiment directory:
  config.yaml        the resolved configuration
  train_log.jsonl    one JSON record per logged step and per epoch
  models/epoch_NNNN.pt  full training state after each epoch (resumable)
  models/final.pt    the embedding network alone, what `extract` loads
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from spkverif.config import TrainConfig
from spkverif.errors import SpkverifError
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.io.tables import write_table
from spkverif.losses import LossHead, build_loss
from spkverif.models import SpeakerEmbeddingModel, build_model, count_parameters
from spkverif.progress import ProgressBar
from spkverif.training.checkpoint import (
    STATE_FORMAT,
    model_payload,
    read_checkpoint,
    restore_rng_state,
    rng_state,
    save_atomic,
)
from spkverif.training.dataset import Batch, ChunkBatches
from spkverif.training.margin import MARGIN_SCHEDULERS, build_margin_schedule
from spkverif.training.optim import OPTIMIZERS, SCHEDULERS
from spkverif.training.sampler import SpeakerChunkSampler, SpeakerIndex

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpkverifError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpkverifError(f"device {name!r} asked for, but no CUDA GPU is available")
    return device


def utterance_lengths(data: DataDir, reader: AudioReader, sample_rate: int) -> dict[str, int]:
    """Lengths in samples from utt2dur, or measured (and saved as utt2dur, as Kaldi does)."""
    if data.utt2dur is not None:
        return {utt: round(data.utt2dur[utt] * sample_rate) for utt in data.utterances}
    lengths = {}
    with ProgressBar(len(data.utterances), "measure durations", unit="utt") as bar:
        for utt in data.utterances:
            lengths[utt] = reader.num_samples(utt)
            bar.advance()
    if data.path is not None:
        try:
            write_table(data.path / "utt2dur", ((u, f"{n / sample_rate:.4f}") for u, n in sorted(lengths.items())))
        except OSError:
            logger.warning("could not write %s/utt2dur; durations will be measured again next time", data.path)
    return lengths


@dataclass
class RunningMean:
    total: float = 0.0
    count: int = 0

    def add(self, value: float, weight: int = 1) -> None:
        self.total += value * weight
        self.count += weight

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


def check_components(config: TrainConfig) -> None:
    """Fail on an unknown model, loss, optimiser or scheduler before any data is read."""
    from spkverif.losses import LOSSES
    from spkverif.models import MODELS

    for registry, component in (
        (MODELS, config.model),
        (LOSSES, config.loss),
        (OPTIMIZERS, config.optimizer),
        (SCHEDULERS, config.scheduler),
        (MARGIN_SCHEDULERS, config.margin_scheduler),
    ):
        registry.get(component.name)


class Trainer:
    def __init__(self, config: TrainConfig, data_dir: str | Path, exp_dir: str | Path):
        check_components(config)
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.models_dir = self.exp_dir / "models"
        self.log_path = self.exp_dir / "train_log.jsonl"
        self.device = resolve_device(config.training.device)
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        self.data = load_data_dir(data_dir)
        sample_rate = config.data.sample_rate
        self.reader = AudioReader.from_data_dir(self.data, sample_rate, config.data.resample)
        self.model: SpeakerEmbeddingModel = build_model(config.model.name, config.model.options)
        if self.model.sample_rate != sample_rate:
            raise SpkverifError(f"model expects {self.model.sample_rate} Hz but data.sample_rate is {sample_rate}")
        self.num_speakers = len(self.data.speakers)
        self.head: LossHead = build_loss(
            config.loss.name, self.model.embedding_dim, self.num_speakers, config.loss.options
        )
        self._check_batches()
        self.margin_schedule = build_margin_schedule(
            config.margin_scheduler.name,
            config.margin_scheduler.options,
            config.loss.name,
            self.head.final_margin,
            config.training.batches_per_epoch,
        )
        parameters = list(self.model.parameters()) + list(self.head.parameters())
        self.optimizer = OPTIMIZERS.build(config.optimizer.name, parameters, **config.optimizer.options)
        self.total_steps = config.training.epochs * config.training.batches_per_epoch
        self.scheduler = SCHEDULERS.build(
            config.scheduler.name, self.optimizer, total_steps=self.total_steps, **config.scheduler.options
        )
        self.model.to(self.device)
        self.head.to(self.device)
        self.chunk_samples = round(config.data.chunk_seconds * sample_rate)
        if self.chunk_samples < self.model.min_samples:
            raise SpkverifError(
                f"data.chunk_seconds {config.data.chunk_seconds} is shorter than the model's minimum "
                f"{self.model.min_samples / sample_rate:.3f} s"
            )
        self.epoch = 0
        self.step = 0

    def _check_batches(self) -> None:
        """Refuse, before any work, batches the loss cannot learn from."""
        options = self.config.training
        name = self.config.loss.name
        if options.utts_per_speaker < self.head.min_utts_per_speaker:
            raise SpkverifError(
                f"loss {name!r} needs at least {self.head.min_utts_per_speaker} utterances per speaker "
                f"in a batch; training.utts_per_speaker is {options.utts_per_speaker}"
            )
        if options.speakers_per_batch < self.head.min_speakers_per_batch:
            raise SpkverifError(
                f"loss {name!r} needs at least {self.head.min_speakers_per_batch} speakers per batch; "
                f"training.speakers_per_batch is {options.speakers_per_batch}"
            )
        if options.speakers_per_batch > self.num_speakers:
            raise SpkverifError(
                f"training.speakers_per_batch is {options.speakers_per_batch} but "
                f"{self.data.path} has only {self.num_speakers} speakers"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model.name,
            "model_parameters": count_parameters(self.model),
            "loss": self.config.loss.name,
            "loss_parameters": count_parameters(self.head),
            "speakers": self.num_speakers,
            "utterances": len(self.data.utterances),
            "device": str(self.device),
        }

    # checkpoints -------------------------------------------------------------

    def checkpoint_path(self, epoch: int) -> Path:
        return self.models_dir / f"epoch_{epoch:04d}.pt"

    def save_state(self, epoch: int, step: int) -> Path:
        path = self.checkpoint_path(epoch if step == 0 else epoch + 1)
        payload = {
            "format": STATE_FORMAT,
            "model": self.model.spec,
            "model_state": self.model.state_dict(),
            "head_state": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "speakers": self.data.speakers,
        }
        save_atomic(payload, path)
        return path

    def latest_checkpoint(self) -> Path | None:
        candidates = sorted(self.models_dir.glob("epoch_*.pt"))
        return candidates[-1] if candidates else None

    def resume(self) -> None:
        path = self.latest_checkpoint()
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.models_dir)
            return
        state = read_checkpoint(path)
        if state["format"] != STATE_FORMAT:
            raise SpkverifError("not a training checkpoint", path)
        if state["speakers"] != self.data.speakers:
            raise SpkverifError("the checkpoint was trained on other speakers than --data holds", path)
        self.model.load_state_dict(state["model_state"])
        self.head.load_state_dict(state["head_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self._truncate_log(self.epoch * self.config.training.batches_per_epoch + self.step)
        logger.info("resumed from %s at epoch %d, step %d", path, self.epoch + 1, self.step)

    def _truncate_log(self, global_step: int) -> None:
        """Keep only records up to the checkpoint, so the log never mixes two runs."""
        if not self.log_path.is_file():
            return
        kept = [
            line
            for line in self.log_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("global_step", 0) <= global_step
        ]
        self.log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # the loop ----------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _loader(self, index: SpeakerIndex) -> DataLoader:
        sampler = SpeakerChunkSampler(
            index,
            self.config.training.speakers_per_batch,
            self.config.training.utts_per_speaker,
            self.chunk_samples,
            self.config.seed,
        )
        dataset = ChunkBatches(
            sampler,
            self.reader,
            self.config.training.epochs,
            self.config.training.batches_per_epoch,
            self.epoch,
            self.step,
        )
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
            persistent_workers=False,
        )

    def run(self) -> Path:
        options = self.config.training
        lengths = utterance_lengths(self.data, self.reader, self.config.data.sample_rate)
        index = SpeakerIndex.build(self.data.utt2spk, lengths)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.exp_dir / "config.yaml")
        if self.epoch == 0 and self.step == 0:
            self.log_path.unlink(missing_ok=True)
            self._log({"event": "start", "global_step": 0, **self.describe()})
        iterator = iter(self._loader(index))
        while self.epoch < options.epochs:
            self._run_epoch(iterator)
        final = self.models_dir / "final.pt"
        save_atomic(model_payload(self.model, {"config": self.config.to_dict()}), final)
        logger.info("final model: %s", final)
        return final

    def _run_epoch(self, iterator: Any) -> None:
        options = self.config.training
        self.model.train()
        self.head.train()
        loss_mean, accuracy_mean = RunningMean(), RunningMean()
        window_start = time.monotonic()
        window_wait = 0.0
        window_samples = 0
        epoch_start = time.monotonic()
        with ProgressBar(options.batches_per_epoch, f"epoch {self.epoch + 1}/{options.epochs}", unit="batch") as bar:
            bar.completed = self.step
            while self.step < options.batches_per_epoch:
                wait_start = time.monotonic()
                batch: Batch = next(iterator)
                window_wait += time.monotonic() - wait_start
                margin = self._schedule_margin()
                loss, accuracy = self._train_step(batch)
                loss_mean.add(loss, len(batch.labels))
                if accuracy is not None:
                    accuracy_mean.add(accuracy, len(batch.labels))
                window_samples += len(batch.labels)
                self.step += 1
                global_step = self.epoch * options.batches_per_epoch + self.step
                lr = self.optimizer.param_groups[0]["lr"]
                accuracy_field = {"acc": accuracy_mean.value} if accuracy_mean.count else {}
                bar.advance(1, loss=loss_mean.value, **accuracy_field, lr=lr, **margin)
                if self.step % options.log_every == 0 or self.step == options.batches_per_epoch:
                    elapsed = max(time.monotonic() - window_start, 1e-9)
                    self._log(
                        {
                            "event": "step",
                            "epoch": self.epoch + 1,
                            "step": self.step,
                            "global_step": global_step,
                            "loss": loss,
                            "loss_avg": loss_mean.value,
                            "accuracy": accuracy_mean.value if accuracy_mean.count else None,
                            "lr": lr,
                            **margin,
                            "samples_per_s": window_samples / elapsed,
                            "data_wait_fraction": window_wait / elapsed,
                        }
                    )
                    window_start, window_wait, window_samples = time.monotonic(), 0.0, 0
        self._log(
            {
                "event": "epoch",
                "epoch": self.epoch + 1,
                "global_step": (self.epoch + 1) * options.batches_per_epoch,
                "loss": loss_mean.value,
                "accuracy": accuracy_mean.value if accuracy_mean.count else None,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": time.monotonic() - epoch_start,
            }
        )
        self.epoch += 1
        self.step = 0
        self.save_state(self.epoch, 0)

    def _schedule_margin(self) -> dict[str, float]:
        """Set the margin for the coming step; {"margin": m} for the log, {} for a loss without one."""
        if self.margin_schedule is None:
            return {}
        margin = self.margin_schedule(self.epoch * self.config.training.batches_per_epoch + self.step)
        self.head.set_margin(margin)
        return {"margin": margin}

    def _train_step(self, batch: Batch) -> tuple[float, float | None]:
        waveforms = batch.waveforms.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        output = self.head(self.model(waveforms), labels)
        loss = output.loss
        if not torch.isfinite(loss):
            raise SpkverifError(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; "
                f"the last good checkpoint is {self.latest_checkpoint()}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.training.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                list(self.model.parameters()) + list(self.head.parameters()), self.config.training.max_grad_norm
            )
        self.optimizer.step()
        self.scheduler.step()
        accuracy = None
        if output.logits is not None:
            accuracy = (output.logits.argmax(dim=1) == labels).float().mean().item()
        return loss.item(), accuracy


def train(
    config: TrainConfig, data_dir: str | Path, exp_dir: str | Path, resume: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Run the train stage; with `dry_run`, only build everything and describe it."""
    exp_dir = Path(exp_dir)
    trainer = Trainer(config, data_dir, exp_dir)
    description = trainer.describe()
    if dry_run:
        return description
    if trainer.latest_checkpoint() is not None and not resume:
        raise SpkverifError("already holds checkpoints; pass --resume to continue, or choose another --exp", exp_dir)
    if resume:
        trainer.resume()
    logger.info(
        "training %s (%.2fM parameters) with %s on %d speakers, %d utterances, device %s",
        description["model"],
        description["model_parameters"] / 1e6,
        description["loss"],
        description["speakers"],
        description["utterances"],
        description["device"],
    )
    final = trainer.run()
    description["final_model"] = str(final)
    return description
