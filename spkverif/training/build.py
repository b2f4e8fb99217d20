"""Everything training needs, built from a `TrainConfig`: data, network, optimisation, augmentation, validation.

The order of construction is part of a run's identity: building the model and the
loss head draws their initial weights from torch's global generator, seeded just
before, so the parts are built in the same order every time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from spkverif.config import TrainConfig
from spkverif.io.audio import AudioReader, PreloadedAudio, measure_lengths
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.io.shards import SHARD_LIST, read_shard_list
from spkverif.losses import LossHead, build_loss
from spkverif.models import SpeakerEmbeddingModel, build_model
from spkverif.training.augment import SPEEDS, ChunkAugmenter, LazyAudioPool, SpecAugment, noise_kinds
from spkverif.training.channel import AugmentChain, ChannelAugmenter
from spkverif.training.dataset import ChunkBatches, single_threaded_worker
from spkverif.training.distributed import DistributedContext
from spkverif.training.features import PrecomputedFeatures
from spkverif.training.held_out import Validator
from spkverif.training.margin_schedules import MarginSchedule, build_margin_schedule
from spkverif.training.optim import OPTIMIZERS, SCHEDULERS
from spkverif.training.parts import PartFreezer, network_parts, parameter_groups, scale_learning_rates
from spkverif.training.preflight import check_compiler, check_setup, check_shards
from spkverif.training.sampler import ChunkLengths, SpeakerChunkSampler, SpeakerIndex
from spkverif.training.streaming import ShardChunks, check_streams

logger = logging.getLogger(__name__)

AMP_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingNetwork(nn.Module):
    """Embedding network and loss head as one module: what DDP wraps and the optimiser steps.

    It reads waveforms (B, T), or with `features_given` the front end's unnormalised features
    (B, frames, dims) computed once an utterance (`data.precompute_features`), which go through
    `SpeakerEmbeddingModel.embed_features`. SpecAugment, when given, goes in through the model's
    feature hook (`feature_transform`), in training mode only.
    Under mixed precision the network runs in the autocast dtype and the loss head in float32,
    autocast off: margins, pair distances and the softmax are computed at full precision (and
    CUDA's autocast, which keeps some of the margin's operations in float32 and lowers the rest,
    cannot hand a head tensors of two dtypes).
    """

    def __init__(
        self,
        model: SpeakerEmbeddingModel,
        head: LossHead,
        spec_augment: SpecAugment | None = None,
        features_given: bool = False,
    ):
        super().__init__()
        self.model = model
        self.head = head
        self.spec_augment = spec_augment
        self.features_given = features_given

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss (scalar) and logits (B, classes) or None, for labels (B,) and inputs: waveforms (B, T), or
        with `features_given` the front end's unnormalised features (B, frames, dims) (`PrecomputedFeatures`)."""
        transform = self.spec_augment if self.training else None
        embed = self.model.embed_features if self.features_given else self.model
        embeddings = embed(inputs, transform)
        with torch.autocast(embeddings.device.type, enabled=False):
            output = self.head(embeddings.float(), labels)
        return output.loss, output.logits


@dataclass
class Components:
    """The parts of a training run (see `build_components`)."""

    data: DataDir
    shards: list | None
    reader: AudioReader | PreloadedAudio
    features: PrecomputedFeatures | None
    model: SpeakerEmbeddingModel
    head: LossHead
    speeds: tuple[float, ...]
    margin_schedule: MarginSchedule | None
    network: TrainingNetwork
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    ddp: nn.Module
    augmenter: AugmentChain | None
    validator: Validator | None
    freezer: PartFreezer


def utterance_lengths(data: DataDir, reader: AudioReader | PreloadedAudio, sample_rate: int) -> dict[str, int]:
    """Lengths in samples at `sample_rate`: from utt2dur when the directory has one, else measured
    in memory (the data directory is never written to; `spkverif data durations` saves them)."""
    if data.utt2dur is not None:
        return {utt: round(data.utt2dur[utt] * sample_rate) for utt in data.utterances}
    logger.info(
        "%s has no utt2dur: measuring %d utterances (save the durations once with `spkverif data durations %s`)",
        data.path, len(data.utterances), data.path,
    )  # fmt: skip
    return measure_lengths(reader, data.utterances)


def build_augmenter(config: TrainConfig) -> AugmentChain | None:
    """Noise and reverberation, then a channel; None when nothing is switched on."""
    options = config.augment
    sample_rate = config.data.sample_rate
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


def _read_data(config: TrainConfig, data_dir: str | Path) -> tuple[DataDir, list | None, AudioReader]:
    data = load_data_dir(data_dir)
    shard_list = Path(data_dir) / SHARD_LIST
    shards = read_shard_list(shard_list) if shard_list.is_file() else None
    return data, shards, AudioReader.from_data_dir(data, config.data.sample_rate, config.data.resample)


def skip_vector_isa_probe() -> None:
    """Spare a compiled CPU training inductor's first probe of the vector instructions: for each
    instruction set the CPU reports, it builds a test kernel and loads it in a new Python process,
    which imports torch (on 2 cores 5-12 s of every training process; the LibriSpeech recipe starts
    five). The CPU's own flags still choose the set, and the AMX and AVX512-BF16 probes still run;
    `check_compiler` has found the compiler. `TORCHINDUCTOR_VEC_ISA_OK`, where set, decides instead.
    """
    if os.environ.get("TORCHINDUCTOR_VEC_ISA_OK") is None:
        from torch._inductor import config as inductor_config

        inductor_config.cpp.vec_isa_ok = True


def cpu_lacks_bf16() -> bool:
    """Whether this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):  # a build without oneDNN's query
        return False


def warn_if_amp_is_emulated(amp: str, device: torch.device) -> None:
    """Warn when bf16 autocast runs on a CPU that emulates bfloat16: slower than float32 there.

    On one with AVX512-BF16 (an AMD EPYC of this project's CPU machine) a forward and
    backward pass of the LibriSpeech recipe's x-vector took 0.33 s in bf16 against 0.60 s.
    """
    if amp == "bf16" and device.type == "cpu" and cpu_lacks_bf16():
        logger.warning(
            "--amp bf16 on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated and training will be "
            "slower than with --amp none"
        )


def _build_optimisation(
    config: TrainConfig, network: TrainingNetwork, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler]:
    """Optimiser (a parameter group per `training.lr_scale` factor), learning-rate schedule (stepped
    once a step) and grad scaler (active with fp16)."""
    options = config.training
    parameters = parameter_groups(network, network_parts(network.model, network.head), options.lr_scale)
    optimizer = OPTIMIZERS.build(config.optimizer.name, parameters, **config.optimizer.options)
    scale_learning_rates(optimizer)
    scheduler = SCHEDULERS.build(
        config.scheduler.name,
        optimizer,
        total_steps=options.epochs * options.batches_per_epoch,
        steps_per_epoch=options.batches_per_epoch,
        **config.scheduler.options,
    )
    return optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=options.amp == "fp16")


def _wrap_ddp(network: nn.Module, context: DistributedContext) -> nn.Module:
    if not context.enabled:
        return network
    device = context.device
    return nn.parallel.DistributedDataParallel(
        network, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
    )


def chunk_lengths(config: TrainConfig) -> ChunkLengths:
    """The training chunks' lengths in samples: `data.chunk_seconds`, or one drawn a step up to
    `data.chunk_seconds_max`, in steps of 10 ms."""
    data = config.data
    return ChunkLengths(data.chunk_samples, round(data.chunk_seconds_max * data.sample_rate), data.sample_rate // 100)


def build_components(config: TrainConfig, data_dir: str | Path, context: DistributedContext) -> Components:
    """Build every part, checking each against the others (`checks.check_setup`) before any work.

    Call with torch's generator seeded: the model's and the head's initial weights come from it.
    """
    data, shards, reader = _read_data(config, data_dir)
    model = build_model(config.model.name, config.model.options, vars(config.frontend), config.data.sample_rate)
    speeds = SPEEDS if config.augment.speed_perturb else (1.0,)
    head = build_loss(config.loss.name, model.embedding_dim, len(data.speakers) * len(speeds), config.loss.options)
    check_setup(config, data, model, head)
    if shards is not None:
        check_shards(config, head)
    check_compiler(config, context.device)
    # after the checks, which take seconds where preloading may take minutes
    if config.data.preload:
        reader = PreloadedAudio(reader, data.utterances)
    features = None
    if config.data.precompute_features:  # the front end as built: in training mode, so dithered as Kaldi's
        features = PrecomputedFeatures(reader, data.utterances, model.frontend, chunk_lengths(config).most)
    margin_schedule = build_margin_schedule(
        config.margin_scheduler.name, config.margin_scheduler.options, config.loss.name, head.final_margin,
        config.training.batches_per_epoch,
    )  # fmt: skip
    network = TrainingNetwork(model, head, SpecAugment() if config.augment.spec_augment else None, features is not None)
    network.to(context.device)
    if config.training.compile:
        # in place: the state dict keeps its names, so checkpoints load into an eager model
        model.encoder.compile()
        # inductor imports cpp_extension, which warns of a missing CUDA runtime on every machine without one
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        if context.device.type == "cpu":
            skip_vector_isa_probe()
        logger.info("compiling the encoder (torch.compile): the first step takes seconds more, a minute cold")
    optimizer, scheduler, scaler = _build_optimisation(config, network, context.device)
    warn_if_amp_is_emulated(config.training.amp, context.device)
    ddp = _wrap_ddp(network, context)
    augmenter = build_augmenter(config)
    options = config.training
    validator = None
    if options.valid_trials and context.is_main:
        validator = Validator(options.valid_data, options.valid_trials, config.data.sample_rate, config.data.resample)
    freezer = PartFreezer(network_parts(model, head), options.freeze, toggle_grad=not context.enabled)
    return Components(
        data, shards, reader, features, model, head, speeds, margin_schedule, network, optimizer, scheduler, scaler,
        AMP_TYPES.get(options.amp), ddp, augmenter, validator, freezer,
    )  # fmt: skip


def build_loader(
    config: TrainConfig,
    parts: Components,
    index: SpeakerIndex,
    context: DistributedContext,
    micro_batches: tuple[int, ...],
    start: tuple[int, int],
) -> DataLoader:
    """Batches from (epoch, step) `start` to the end of training: this process's `micro_batches`
    of every step, from the data directory or streamed from its shards (`data.num_workers` workers)."""
    options = config.training
    chunk_samples = chunk_lengths(config)
    sampler = SpeakerChunkSampler(
        index, options.speakers_per_batch, options.utts_per_speaker, chunk_samples, config.seed, parts.speeds
    )
    workers = config.data.num_workers
    position = (options.epochs, options.batches_per_epoch, *start)
    dataset: ChunkBatches | ShardChunks
    if parts.shards is not None:
        check_streams(parts.shards, context.world_size * max(1, workers))
        dataset = ShardChunks(
            parts.shards, dict(zip(index.utterances, index.labels.tolist(), strict=True)), len(index.speakers),
            chunk_samples, sampler.batch_size, config.seed, position, micro_batches, parts.speeds, parts.augmenter,
            config.data.shuffle_buffer, (context.rank, context.world_size), config.data.sample_rate,
        )  # fmt: skip
    else:
        dataset = ChunkBatches(sampler, parts.reader, *position, micro_batches, parts.augmenter, parts.features)
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=context.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=single_threaded_worker if workers > 0 else None,
    )
