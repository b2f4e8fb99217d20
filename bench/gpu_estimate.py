"""What recipes/librispeech/conf/gpu.yaml takes on a GPU: estimated from what a CPU can measure,
or priced from a short training's own log on the GPU (`--measured`).

Without a GPU two figures bound the time:

- the network's work: floating-point operations of one training step of gpu.yaml's
  network and head (ECAPA-TDNN C 512, 192-d, AAM over the 2,338 readers of the three
  training subsets) per 2 s chunk, forward and backward, counted by torch's
  FlopCounterMode; the configuration's chunks (epochs x batches x batch size) times
  that, divided by a sustained GPU rate that is an assumption, printed for a range;
- the data path: 2 s chunks a second that one CPU core turns out through gpu.yaml's
  channel augmentation (probability 0.6, the four channels drawn uniformly), timed
  here; reading a decoded copy adds its own cost (`bench/loader_throughput.py`).

    python bench/gpu_estimate.py
    python bench/gpu_estimate.py --config recipes/librispeech/conf/gpu.yaml --seconds 20

With a short training of a configuration on the GPU (bench/gpu_check.sh runs one), its
`train_log.jsonl` gives the rate measured there, and the configuration's full schedule is
priced at it: chunks (epochs x batches x batch size) / measured chunks a second. Two rates are
printed: the steady one (the median of the step records' windows after the first epoch) and
the whole-epoch one (each epoch's chunks over its wall time, the loader's start included):

    python bench/gpu_estimate.py --measured recipes/librispeech/conf/gpu.yaml=EXP/gpu_pretrain/train_log.jsonl \
                                 --measured recipes/librispeech/conf/gpu_lm.yaml=EXP/gpu/train_log.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from spkverif.base.errors import SpkverifError
from spkverif.config import load_train_config
from spkverif.losses import build_loss
from spkverif.models import build_model
from spkverif.stages.prepare.voxceleb import VOX2_REFERENCE
from spkverif.training.channel import ChannelAugmenter

REPO = Path(__file__).resolve().parents[1]
LIBRISPEECH_TRAINING_READERS = 251 + 921 + 1166  # train-clean-100, -360, other-500
VOXCELEB_RESNET34 = REPO / "recipes" / "voxceleb" / "conf" / "resnet34_aam.yaml"


def step_flops(config, classes: int, batch: int = 4) -> float:
    """Floating-point operations of one training step per chunk (forward and backward)."""
    torch.manual_seed(0)
    model = build_model(config.model.name, config.model.options, vars(config.frontend), config.data.sample_rate)
    head = build_loss(config.loss.name, model.embedding_dim, classes, dict(config.loss.options))
    waveforms = torch.randn(batch, int(config.data.chunk_seconds * config.data.sample_rate)) * 0.1
    labels = torch.randint(0, classes, (batch,))
    with FlopCounterMode(display=False) as counter:
        head(model(waveforms), labels).loss.backward()
    return counter.get_total_flops() / batch


def channel_rate(config, seconds: float, names: list[str] | None = None, prob: float | None = None) -> float:
    """2 s chunks a second through the configuration's channel augmentation (or through
    `names` with probability `prob`), one thread."""
    torch.set_num_threads(1)
    names = config.augment.channels if names is None else names
    prob = config.augment.channel_prob if prob is None else prob
    augment = ChannelAugmenter(names, prob, config.data.sample_rate)
    rng = np.random.default_rng(0)
    chunk = (rng.standard_normal(int(config.data.chunk_seconds * config.data.sample_rate)) * 0.1).astype(np.float32)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        augment(chunk, rng)
        done += 1
    return done / (time.perf_counter() - started)


def schedule_chunks(config) -> int:
    """Chunks a configuration trains on: epochs x batches an epoch x speakers x utterances a batch."""
    options = config.training
    return options.epochs * options.batches_per_epoch * options.speakers_per_batch * options.utts_per_speaker


def epoch_projection(rate: float, config_path: Path = VOXCELEB_RESNET34) -> dict:
    """What a training rate of `rate` chunks a second means for the VoxCeleb recipe: hours of a
    VoxCeleb2 dev epoch (its 1,092,009 utterances, one chunk each: the recipe's sampler cuts one
    chunk of an utterance it draws) and of the configuration's whole schedule on one GPU."""
    config = load_train_config(config_path)
    utterances = VOX2_REFERENCE["dev"].utterances
    chunks = schedule_chunks(config)
    return {
        "chunks_per_s": rate, "utterances": utterances, "chunk_seconds": config.data.chunk_seconds,
        "epoch_hours": utterances / rate / 3600, "schedule_chunks": chunks, "schedule_hours": chunks / rate / 3600,
    }  # fmt: skip


def measured_rates(log: Path) -> dict[str, float]:
    """Chunks a second a training log measured: `steady`, the median of its step records' windows
    after the first epoch (all of them when it ran one epoch), and `epochs`, the chunks of every epoch
    after the first (the only one when it ran one) over their wall time; `data_wait`, the steady
    windows' median data-wait fraction. A chunk is one (utterance, crop) of the batch, as the
    start record's `chunks_per_step` counts them.

    Raises ValueError for a log without start, step and epoch records, OSError for one that
    cannot be read."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    start = next((record for record in records if record.get("event") == "start"), {})
    steps = [record for record in records if record.get("event") == "step"]
    epochs = [record for record in records if record.get("event") == "epoch"]
    if not steps or not epochs or "chunks_per_step" not in start:
        raise ValueError(f"{log}: no start, step and epoch records (was the training run?)")
    later = [record for record in steps if record["epoch"] > 1] or steps
    before = [0] + [record["global_step"] for record in epochs[:-1]]
    batches = [record["global_step"] - steps_before for record, steps_before in zip(epochs, before, strict=True)]
    timed = slice(1, None) if len(epochs) > 1 else slice(None)
    seconds = sum(record["seconds"] for record in epochs[timed])
    return {
        "steady": float(np.median([record["samples_per_s"] for record in later])),
        "data_wait": float(np.median([record["data_wait_fraction"] for record in later])),
        "epochs": sum(batches[timed]) * start["chunks_per_step"] / seconds,
    }


def print_measured(pairs: list[str]) -> None:
    """For each CONFIG=LOG: the configuration's full schedule at the rates LOG measured."""
    total = {"steady": 0.0, "epochs": 0.0}
    for pair in pairs:
        config_path, equals, log = pair.partition("=")
        if not equals or not config_path or not log:
            raise ValueError(f"--measured takes CONFIG=LOG, not {pair!r}")
        config = load_train_config(config_path)
        chunks = schedule_chunks(config)
        rates = measured_rates(Path(log))
        print(
            f"{Path(config_path).name}: {chunks:,} chunks of {config.data.chunk_seconds:g} s; measured "
            f"{rates['steady']:.0f} chunks/s steady (data wait {rates['data_wait']:.0%}), "
            f"{rates['epochs']:.0f} chunks/s over whole epochs"
        )
        for kind in total:
            hours = chunks / rates[kind] / 3600
            total[kind] += hours
            print(f"  at the {'steady' if kind == 'steady' else 'whole-epoch'} rate: {hours:.2f} h")
    if len(pairs) > 1:
        print(f"all: {total['steady']:.2f} h steady, {total['epochs']:.2f} h at the whole-epoch rates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "recipes" / "librispeech" / "conf" / "gpu.yaml"))
    parser.add_argument("--seconds", type=float, default=10.0, help="Time spent measuring the augmentation.")
    parser.add_argument(
        "--measured", action="append", default=[], metavar="CONFIG=LOG",
        help="Price CONFIG's full schedule at the rates the training log LOG measured (repeatable).",
    )  # fmt: skip
    args = parser.parse_args()
    if args.measured:
        try:
            print_measured(args.measured)
        except (OSError, ValueError, SpkverifError) as error:
            raise SystemExit(f"gpu_estimate.py: error: {error}") from None
        return
    config = load_train_config(args.config)
    chunks = schedule_chunks(config)
    flops = step_flops(config, LIBRISPEECH_TRAINING_READERS)
    rate = channel_rate(config, args.seconds)
    print(f"{config.model.name}: {flops / 1e9:.4g} GFLOP a {config.data.chunk_seconds:g} s chunk, forward + backward")
    print(f"{chunks:,} chunks: {chunks * flops / 1e15:.3g} PFLOP")
    for tflops in (25, 50, 100):
        print(f"  at {tflops} TFLOP/s sustained (an assumption): {chunks * flops / tflops / 1e12 / 3600:.2f} h")
    print(f"channel augmentation (p {config.augment.channel_prob}): {rate:.0f} chunks/s on one core")
    for name in config.augment.channels:
        print(f"  {name} alone, every chunk: {channel_rate(config, args.seconds / 4, [name], 1.0):.0f} chunks/s")
    for workers in (8, 16):
        print(f"  {workers} loader workers: {chunks / rate / workers / 3600:.2f} h at that rate alone")


if __name__ == "__main__":
    main()
