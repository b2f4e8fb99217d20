"""Every check the train stage makes before it does any work, in one place.

`check_config` needs the configuration only (it runs before any data is read);
`check_setup` needs the data directory, the model and the loss head once they are
built; `check_batch_fits` is shared with the sampler. Each raises `SpkverifError`
with a message that names the setting to change.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import torch
from torch.utils._triton import has_triton

from spkverif.base.errors import SpkverifError
from spkverif.config import TrainConfig
from spkverif.frontends import FRONTENDS
from spkverif.io.datadir import DataDir
from spkverif.losses import LOSSES, LossHead
from spkverif.models import MODELS, SpeakerEmbeddingModel
from spkverif.models.registry import default_frontend
from spkverif.training.margin_schedules import MARGIN_SCHEDULERS
from spkverif.training.optim import OPTIMIZERS, SCHEDULERS


def check_config(config: TrainConfig) -> None:
    """Fail on an unknown model, loss, optimiser or scheduler, or settings that contradict each other."""
    for registry, component in (
        (MODELS, config.model),
        (LOSSES, config.loss),
        (OPTIMIZERS, config.optimizer),
        (SCHEDULERS, config.scheduler),
        (MARGIN_SCHEDULERS, config.margin_scheduler),
    ):
        registry.get(component.name)
    if config.frontend.name:
        FRONTENDS.get(config.frontend.name)
    if bool(config.training.valid_data) != bool(config.training.valid_trials):
        raise SpkverifError("validation needs both --valid-data and --valid-trials")
    if config.data.precompute_features:
        check_precomputable(config)


def check_precomputable(config: TrainConfig) -> None:
    """`data.precompute_features` cuts chunks from features: nothing may change the waveform first."""
    augment = config.augment
    waveform_work = {  # what would change the waveform, and how to leave it off
        "augment.noise (--noise)": (augment.noise, "drop --noise"),
        "augment.rir (--rir)": (augment.rir, "drop --rir"),
        "augment.channel_prob": (augment.channel_prob > 0, "set augment.channel_prob to 0"),
        "augment.speed_perturb (--speed-perturb)": (augment.speed_perturb, "drop --speed-perturb"),
        "data.preload (--preload)": (config.data.preload, "drop --preload"),
    }
    for name, (wanted, remedy) in waveform_work.items():
        if wanted:
            raise SpkverifError(
                f"data.precompute_features (--precompute-features) cuts chunks from features computed once, so "
                f"{name} cannot work on their waveforms: {remedy}, or leave --precompute-features off"
            )


def check_batch_fits(speakers_per_batch: int, utts_per_speaker: int, num_speakers: int, source: str) -> None:
    """A P x K batch needs P, K >= 1 and at least P speakers in `source` (named in the message)."""
    if speakers_per_batch < 1 or utts_per_speaker < 1:
        raise SpkverifError("speakers_per_batch and utts_per_speaker must be at least 1")
    if speakers_per_batch > num_speakers:
        raise SpkverifError(
            f"training.speakers_per_batch is {speakers_per_batch} but {source} has only {num_speakers} speakers"
        )


def check_setup(config: TrainConfig, data: DataDir, model: SpeakerEmbeddingModel, head: LossHead) -> None:
    """The built model and head against the data and the batches: what the loss needs of a
    batch (speakers, utterances per speaker), and the chunk length. (The model's rate is
    `data.sample_rate` by construction: `build_model` builds the front end at it.)"""
    options, name, rate = config.training, config.loss.name, config.data.sample_rate
    if options.utts_per_speaker < head.min_utts_per_speaker:
        raise SpkverifError(
            f"loss {name!r} needs at least {head.min_utts_per_speaker} utterances per speaker "
            f"in a batch; training.utts_per_speaker is {options.utts_per_speaker}"
        )
    if options.speakers_per_batch < head.min_speakers_per_batch:
        raise SpkverifError(
            f"loss {name!r} needs at least {head.min_speakers_per_batch} speakers per batch; "
            f"training.speakers_per_batch is {options.speakers_per_batch}"
        )
    check_batch_fits(options.speakers_per_batch, options.utts_per_speaker, len(data.speakers), str(data.path))
    if config.data.precompute_features and not getattr(model.frontend, "cuts_frames", False):
        frontend = config.frontend.name or default_frontend(config.model.name)
        raise SpkverifError(
            f"data.precompute_features (--precompute-features) needs a front end whose chunk features are frames "
            f"of the utterance's (kaldi_fbank or wespeaker_fbank, with frontend.snip_edges true), not "
            f"{frontend}{' with snip_edges false' if hasattr(model.frontend, 'cuts_frames') else ''}: "
            "leave --precompute-features off"
        )
    if 0 < config.data.chunk_seconds_max < config.data.chunk_seconds:
        raise SpkverifError(
            f"data.chunk_seconds_max {config.data.chunk_seconds_max} is below data.chunk_seconds "
            f"{config.data.chunk_seconds}: set it above, or to 0 for chunks of one length"
        )
    if config.data.chunk_samples < model.min_samples:
        raise SpkverifError(
            f"data.chunk_seconds {config.data.chunk_seconds} is shorter than the model's minimum "
            f"{model.min_samples / rate:.3f} s"
        )


def check_shards(config: TrainConfig, head: LossHead) -> None:
    """Shards stream utterances one at a time: they cannot give a loss P x K batches."""
    if head.min_utts_per_speaker > 1:
        raise SpkverifError(
            f"loss {config.loss.name!r} needs P x K batches, which shards cannot give: "
            "train from a data directory without shards.list"
        )
    for wanted, name, what in (
        (config.data.preload, "preload (--preload)", "reads a data directory's audio into memory"),
        (
            config.data.precompute_features,
            "precompute_features (--precompute-features)",
            "computes the features of a data directory's audio once",
        ),
    ):
        if wanted:
            raise SpkverifError(
                f"data.{name} {what}; shards stream it: train from a data directory without shards.list, "
                "or leave it off"
            )


def check_compiler(config: TrainConfig, device: torch.device) -> None:
    """`training.compile` needs what torch.compile's inductor builds its code with: on a CPU a C++
    compiler (`$CXX`, else g++, as inductor looks for it) and Python's C headers (its kernels are
    Python extensions); on a GPU, Triton. Raises `SpkverifError` naming what is missing."""
    if not config.training.compile:
        return
    if device.type == "cpu":
        compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(compiler) is None:
            raise SpkverifError(
                f"training.compile (--compile) on the CPU needs a C++ compiler, and {compiler} is not on PATH: "
                "install one (apt-get install g++) or set CXX, or leave compile off"
            )
        headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
        if not headers.is_file():
            raise SpkverifError(
                f"training.compile (--compile) on the CPU needs Python's C headers, and {headers} is missing: "
                "install them (apt-get install python3-dev), or leave compile off"
            )
    elif device.type == "cuda" and not has_triton():
        raise SpkverifError(
            "training.compile (--compile) on a GPU needs Triton and a GPU of compute capability 7.0 or more: "
            "pip install triton, or leave compile off"
        )
