"""The `train` stage: speaker-balanced chunks -> embedding network -> loss head.

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

import contextlib
import inspect
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from spkverif.config import TrainConfig
from spkverif.errors import SpkverifError
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.io.shards import SHARD_LIST, read_shard_list
from spkverif.io.tables import write_table
from spkverif.losses import LossHead, build_loss
from spkverif.models import MODELS, SpeakerEmbeddingModel, build_model, count_parameters
from spkverif.progress import ProgressBar
from spkverif.training.augment import SPEEDS, ChunkAugmenter, LazyAudioPool, SpecAugment, noise_kinds
from spkverif.training.channel import AugmentChain, ChannelAugmenter
from spkverif.training.checkpoint import (
    STATE_FORMAT,
    average_states,
    latest_checkpoint,
    model_payload,
    read_checkpoint,
    restore_rng_state,
    rng_state,
    save_atomic,
)
from spkverif.training.dataset import Batch, ChunkBatches, single_threaded_worker
from spkverif.training.distributed import DistributedContext, resolve_device, setup_distributed, shutdown_distributed
from spkverif.training.margin import MARGIN_SCHEDULERS, build_margin_schedule
from spkverif.training.optim import OPTIMIZERS, SCHEDULERS
from spkverif.training.sampler import SpeakerChunkSampler, SpeakerIndex
from spkverif.training.shards import ShardChunks, check_streams
from spkverif.training.validation import Validator

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "resolve_device", "train"]

_AMP_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    if bool(config.training.valid_data) != bool(config.training.valid_trials):
        raise SpkverifError("validation needs both --valid-data and --valid-trials")


def micro_batch_seed(seed: int, epoch: int, step: int, part: int) -> int:
    """The torch seed of one micro-batch (dither, SpecAugment, dropout): the same in any process."""
    return int(np.random.SeedSequence([seed, epoch, step, part, 2]).generate_state(1)[0])


class TrainingNetwork(nn.Module):
    """Embedding network and loss head as one module: what DDP wraps and the optimiser steps."""

    def __init__(self, model: SpeakerEmbeddingModel, head: LossHead, spec_augment: SpecAugment | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.spec_augment = spec_augment

    def forward(self, waveforms: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.model.frontend(waveforms)
        if self.training and self.spec_augment is not None:
            features = self.spec_augment(features)
        output = self.head(self.model.encoder(features), labels)
        return output.loss, output.logits


def batchnorm_buffers(module: nn.Module) -> list[torch.Tensor]:
    """Running statistics of every BatchNorm layer (the step counters are kept apart)."""
    buffers = []
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            buffers += [layer.running_mean, layer.running_var]
    return buffers


def batchnorm_counters(module: nn.Module) -> list[torch.Tensor]:
    return [
        layer.num_batches_tracked
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats
    ]


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


def _model_rate_from_data(config: TrainConfig) -> None:
    """`data.sample_rate` alone sets the rate: a model whose options do not name one gets it
    (fbank or SincNet filters at 8 kHz for `data.sample_rate: 8000`), and it is saved with the model."""
    options = config.model.options
    if "sample_rate" not in options and "sample_rate" in inspect.signature(MODELS.get(config.model.name)).parameters:
        options["sample_rate"] = config.data.sample_rate


class Trainer:
    def __init__(self, config: TrainConfig, data_dir: str | Path, exp_dir: str | Path):
        check_components(config)
        self.config = config
        options = config.training
        self.exp_dir = Path(exp_dir)
        self.models_dir = self.exp_dir / "models"
        self.log_path = self.exp_dir / "train_log.jsonl"
        self.context: DistributedContext = setup_distributed(options.device)
        self.device = self.context.device
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        self.data = load_data_dir(data_dir)
        shard_list = Path(data_dir) / SHARD_LIST
        self.shards = read_shard_list(shard_list) if shard_list.is_file() else None
        sample_rate = config.data.sample_rate
        self.reader = AudioReader.from_data_dir(self.data, sample_rate, config.data.resample)
        _model_rate_from_data(config)
        self.model: SpeakerEmbeddingModel = build_model(config.model.name, config.model.options)
        if self.model.sample_rate != sample_rate:
            raise SpkverifError(f"model expects {self.model.sample_rate} Hz but data.sample_rate is {sample_rate}")
        self.num_speakers = len(self.data.speakers)
        self.speeds = SPEEDS if config.augment.speed_perturb else (1.0,)
        self.num_classes = self.num_speakers * len(self.speeds)
        self.head: LossHead = build_loss(
            config.loss.name, self.model.embedding_dim, self.num_classes, config.loss.options
        )
        self._check_batches()
        self.margin_schedule = build_margin_schedule(
            config.margin_scheduler.name,
            config.margin_scheduler.options,
            config.loss.name,
            self.head.final_margin,
            options.batches_per_epoch,
        )
        self.network = TrainingNetwork(self.model, self.head, SpecAugment() if config.augment.spec_augment else None)
        self.network.to(self.device)
        self.optimizer = OPTIMIZERS.build(
            config.optimizer.name, list(self.network.parameters()), **config.optimizer.options
        )
        self.steps_per_epoch = options.batches_per_epoch
        self.total_steps = options.epochs * self.steps_per_epoch
        self.scheduler = SCHEDULERS.build(
            config.scheduler.name,
            self.optimizer,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            **config.scheduler.options,
        )
        self.amp_dtype = _AMP_TYPES.get(options.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.amp == "fp16")
        self.chunk_samples = round(config.data.chunk_seconds * sample_rate)
        if self.chunk_samples < self.model.min_samples:
            raise SpkverifError(
                f"data.chunk_seconds {config.data.chunk_seconds} is shorter than the model's minimum "
                f"{self.model.min_samples / sample_rate:.3f} s"
            )
        self.parts_per_rank = options.grad_accum
        self.parts = tuple(self.context.rank * self.parts_per_rank + a for a in range(self.parts_per_rank))
        self.parts_total = self.context.world_size * self.parts_per_rank
        self.ddp: nn.Module = self.network
        if self.context.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.network,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        self.augmenter = self._build_augmenter()
        self.validator = (
            Validator(options.valid_data, options.valid_trials, sample_rate, config.data.resample)
            if options.valid_trials and self.context.is_main
            else None
        )
        self.epoch = 0
        self.step = 0
        self.best_eer = float("inf")
        self.loss_mean, self.accuracy_mean = RunningMean(), RunningMean()
        self.skipped = 0

    def _build_augmenter(self) -> AugmentChain | None:
        options = self.config.augment
        sample_rate = self.config.data.sample_rate
        noises = []
        if options.noise:
            noises = noise_kinds(
                options.noise, sample_rate, options.noise_snr, options.music_snr, options.babble_snr,
                options.babble_speakers, options.cache_size,
            )  # fmt: skip
        rirs = LazyAudioPool(options.rir, sample_rate, options.cache_size) if options.rir else None
        chain = AugmentChain(
            [
                ChunkAugmenter(noises, rirs, options.noise_prob, options.rir_prob),
                ChannelAugmenter(options.channels, options.channel_prob, sample_rate),
            ]
        )
        return chain if chain.active else None

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
            "classes": self.num_classes,
            "utterances": len(self.data.utterances),
            "device": str(self.device),
            "world_size": self.context.world_size,
            "chunks_per_step": self.config.training.speakers_per_batch
            * self.config.training.utts_per_speaker
            * self.parts_total,
        }

    # checkpoints -------------------------------------------------------------

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def save_state(self) -> Path | None:
        """Everything needed to continue bit for bit; written by rank 0 only."""
        if not self.context.is_main:
            return None
        if self.step == 0:
            path = self.models_dir / f"epoch_{self.epoch:04d}.pt"
        else:
            path = self.models_dir / f"step_{self.global_step:08d}.pt"
        payload = {
            "format": STATE_FORMAT,
            "model": self.model.spec,
            "model_state": self.model.state_dict(),
            "head_state": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_eer": self.best_eer,
            "epoch_means": [vars(self.loss_mean), vars(self.accuracy_mean), self.skipped],
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "speakers": self.data.speakers,
        }
        save_atomic(payload, path)
        for older in self.models_dir.glob("step_*.pt"):
            if older != path:
                older.unlink(missing_ok=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.models_dir, self.steps_per_epoch)

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
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch, self.step, self.best_eer = state["epoch"], state["step"], state["best_eer"]
        loss_mean, accuracy_mean, self.skipped = state["epoch_means"]
        self.loss_mean, self.accuracy_mean = RunningMean(**loss_mean), RunningMean(**accuracy_mean)
        if self.context.is_main:
            self._truncate_log(self.global_step)
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

    def _log(self, record: dict[str, Any]) -> None:
        if self.context.is_main:
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    # the loop ----------------------------------------------------------------

    def _loader(self, index: SpeakerIndex) -> DataLoader:
        sampler = SpeakerChunkSampler(
            index,
            self.config.training.speakers_per_batch,
            self.config.training.utts_per_speaker,
            self.chunk_samples,
            self.config.seed,
            self.speeds,
        )
        workers = self.config.data.num_workers
        dataset: ChunkBatches | ShardChunks
        if self.shards is not None:
            dataset = self._shard_dataset(index, sampler.batch_size, workers)
        else:
            dataset = ChunkBatches(
                sampler,
                self.reader,
                self.config.training.epochs,
                self.steps_per_epoch,
                self.epoch,
                self.step,
                self.parts,
                self.augmenter,
            )
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=single_threaded_worker if workers > 0 else None,
        )

    def _shard_dataset(self, index: SpeakerIndex, batch_size: int, workers: int) -> ShardChunks:
        """Batches streamed from the shards of shards.list (see training/shards.py for what changes)."""
        assert self.shards is not None
        if self.head.min_utts_per_speaker > 1:
            raise SpkverifError(
                f"loss {self.config.loss.name!r} needs P x K batches, which shards cannot give: "
                "train from a data directory without shards.list"
            )
        check_streams(self.shards, self.context.world_size * max(1, workers))
        return ShardChunks(
            self.shards,
            dict(zip(index.utterances, index.labels.tolist(), strict=True)),
            len(index.speakers),
            self.chunk_samples,
            batch_size,
            self.config.seed,
            (self.config.training.epochs, self.steps_per_epoch, self.epoch, self.step),
            self.parts,
            self.speeds,
            self.augmenter,
            self.config.data.shuffle_buffer,
            (self.context.rank, self.context.world_size),
            self.config.data.sample_rate,
        )

    def run(self) -> Path:
        options = self.config.training
        lengths = utterance_lengths(self.data, self.reader, self.config.data.sample_rate)
        index = SpeakerIndex.build(self.data.utt2spk, lengths)
        if self.context.is_main:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.exp_dir / "config.yaml")
            if self.global_step == 0:
                self.log_path.unlink(missing_ok=True)
                self._log({"event": "start", "global_step": 0, **self.describe()})
        self.context.barrier()
        if self.epoch < options.epochs:
            iterator = iter(self._loader(index))
            while self.epoch < options.epochs:
                self._run_epoch(iterator)
        final = self.models_dir / "final.pt"
        if self.context.is_main:
            save_atomic(model_payload(self._final_network(), {"config": self.config.to_dict()}), final)
            logger.info("final model: %s", final)
        self.context.barrier()
        return final

    def _final_network(self) -> SpeakerEmbeddingModel:
        """The last epoch's network, or the mean of the last N epochs' weights."""
        wanted = self.config.training.average_last
        if wanted == 1:
            return self.model
        paths = sorted(self.models_dir.glob("epoch_*.pt"))[-wanted:]
        if len(paths) < wanted:
            logger.warning("--average %d asked for, but only %d epoch checkpoints exist", wanted, len(paths))
        states = [read_checkpoint(path)["model_state"] for path in paths]
        averaged = build_model(self.model.spec["name"], self.model.spec.get("options", {}))
        averaged.load_state_dict(average_states(states))
        logger.info("final model: the mean of %s", ", ".join(path.name for path in paths))
        return averaged

    def _run_epoch(self, iterator: Any) -> None:
        options = self.config.training
        self.network.train()
        if self.step == 0:
            self.loss_mean, self.accuracy_mean, self.skipped = RunningMean(), RunningMean(), 0
        loss_mean, accuracy_mean = self.loss_mean, self.accuracy_mean
        window_start, window_wait, window_samples = time.monotonic(), 0.0, 0
        epoch_start = time.monotonic()
        with ProgressBar(self.steps_per_epoch, f"epoch {self.epoch + 1}/{options.epochs}", unit="batch") as bar:
            bar.completed = self.step
            while self.step < self.steps_per_epoch:
                wait_start = time.monotonic()
                batches = [next(iterator) for _ in self.parts]
                window_wait += time.monotonic() - wait_start
                margin = self._schedule_margin()
                result = self._train_step(batches)
                samples = sum(len(batch.labels) for batch in batches) * self.context.world_size
                window_samples += samples
                if result is None:
                    self.skipped += 1
                else:
                    loss, accuracy = result
                    loss_mean.add(loss, samples)
                    if accuracy is not None:
                        accuracy_mean.add(accuracy, samples)
                self.step += 1
                lr = self.optimizer.param_groups[0]["lr"]
                elapsed = max(time.monotonic() - window_start, 1e-9)
                accuracy_field = {"acc": accuracy_mean.value} if accuracy_mean.count else {}
                bar.advance(
                    1, loss=loss_mean.value, **accuracy_field, lr=lr, **margin, samples_s=window_samples / elapsed
                )
                if self.step % options.log_every == 0 or self.step == self.steps_per_epoch:
                    self._log(
                        {
                            "event": "step",
                            "epoch": self.epoch + 1,
                            "step": self.step,
                            "global_step": self.global_step,
                            "loss": result[0] if result else None,
                            "loss_avg": loss_mean.value,
                            "accuracy": accuracy_mean.value if accuracy_mean.count else None,
                            "lr": lr,
                            **margin,
                            "samples_per_s": window_samples / elapsed,
                            "data_wait_fraction": window_wait / elapsed,
                            "skipped_nonfinite": self.skipped,
                        }
                    )
                    window_start, window_wait, window_samples = time.monotonic(), 0.0, 0
                every = options.checkpoint_every
                if every and self.step % every == 0 and self.step < self.steps_per_epoch:
                    self.save_state()
        self.epoch += 1
        self.step = 0
        record = {
            "event": "epoch",
            "epoch": self.epoch,
            "global_step": self.global_step,
            "loss": loss_mean.value,
            "accuracy": accuracy_mean.value if accuracy_mean.count else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - epoch_start,
            "skipped_nonfinite": self.skipped,
        }
        self._log(record)
        self._validate()
        self.save_state()
        self.context.barrier()

    def _schedule_margin(self) -> dict[str, float]:
        """Set the margin for the coming step; {"margin": m} for the log, {} for a loss without one."""
        if self.margin_schedule is None:
            return {}
        margin = self.margin_schedule(self.global_step)
        self.head.set_margin(margin)
        return {"margin": margin}

    def _validate(self) -> None:
        if self.validator is None:
            return
        result = self.validator.evaluate(self.model, self.device)
        improved = result["eer"] < self.best_eer
        if improved:
            self.best_eer = result["eer"]
            save_atomic(model_payload(self.model, {"config": self.config.to_dict(), "epoch": self.epoch}),
                        self.models_dir / "best.pt")  # fmt: skip
        self._log({"event": "valid", "epoch": self.epoch, "global_step": self.global_step, "best": improved, **result})
        logger.info("epoch %d validation: EER %.2f%%%s", self.epoch, 100 * result["eer"], " (best)" if improved else "")

    def _train_step(self, batches: list[Batch]) -> tuple[float, float | None] | None:
        """One optimiser step over this rank's micro-batches; None when skipped as non-finite."""
        buffers = batchnorm_buffers(self.network)
        counters = batchnorm_counters(self.network)
        restore = self.parts_per_rank > 1 or self.context.enabled
        keep = restore or self.config.training.skip_nonfinite
        snapshot = [buffer.clone() for buffer in buffers + counters] if keep else []
        accumulated = [torch.zeros_like(buffer) for buffer in buffers] if restore else []
        self.optimizer.zero_grad(set_to_none=True)
        losses, correct, total = [], 0, 0
        for position, batch in enumerate(batches):
            if restore:
                for buffer, saved in zip(buffers + counters, snapshot, strict=True):
                    buffer.copy_(saved)
            torch.manual_seed(micro_batch_seed(self.config.seed, batch.epoch, batch.step, batch.part))
            waveforms = batch.waveforms.to(self.device, non_blocking=True)
            labels = batch.labels.to(self.device, non_blocking=True)
            last = position == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.context.enabled else self.ddp.no_sync()
            with sync:
                with torch.autocast(
                    self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
                ):
                    loss, logits = self.ddp(waveforms, labels)
                finite = self.context.all_true(bool(torch.isfinite(loss).item()))
                if not finite:
                    return self._non_finite(loss, snapshot, buffers + counters)
                self.scaler.scale(loss / len(batches)).backward()
            losses.append(loss.item())
            if logits is not None:
                correct += int((logits.argmax(dim=1) == labels).sum().item())
                total += len(labels)
            if restore:
                for sum_, buffer in zip(accumulated, buffers, strict=True):
                    sum_ += buffer
        if restore:
            for buffer, sum_ in zip(buffers, accumulated, strict=True):
                buffer.copy_(self.context.all_reduce_mean(sum_ / len(batches)))
        if self.config.training.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.training.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.head.finish_step(lambda tensor: self.context.all_reduce_mean(tensor) * self.context.world_size)
        statistics = torch.tensor([float(np.mean(losses)), float(correct), float(total)], device=self.device)
        statistics = self.context.all_reduce_mean(statistics)
        accuracy = statistics[1].item() / statistics[2].item() if statistics[2].item() > 0 else None
        return statistics[0].item(), accuracy

    def _non_finite(self, loss: torch.Tensor, snapshot: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
        """Skip the step (with --skip-nonfinite) or stop, leaving the last good checkpoint alone."""
        if snapshot:
            for buffer, saved in zip(buffers, snapshot, strict=True):
                buffer.copy_(saved)
        self.head.abandon_step()
        if not self.config.training.skip_nonfinite:
            raise SpkverifError(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; "
                f"the last good checkpoint is {self.latest_checkpoint() or '(none yet)'} "
                "(pass --skip-nonfinite to skip such steps)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        logger.warning("skipping step %d of epoch %d: the loss is %s", self.step + 1, self.epoch + 1, loss.item())
        return None


def train(
    config: TrainConfig, data_dir: str | Path, exp_dir: str | Path, resume: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Run the train stage; with `dry_run`, only build everything and describe it."""
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
            trainer.ddp = trainer.network  # DDP's reducer holds the process group: release it before the group
        del trainer
        shutdown_distributed()
