"""What recipes/librispeech/conf/gpu.yaml would take on a GPU, from what this machine can measure.

No GPU was at hand, so the time is estimated, not measured. Two figures bound it:

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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from spkverif.config import load_train_config
from spkverif.losses import build_loss
from spkverif.models import build_model
from spkverif.training.channel import ChannelAugmenter

REPO = Path(__file__).resolve().parents[1]
LIBRISPEECH_TRAINING_READERS = 251 + 921 + 1166  # train-clean-100, -360, other-500


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "recipes" / "librispeech" / "conf" / "gpu.yaml"))
    parser.add_argument("--seconds", type=float, default=10.0, help="Time spent measuring the augmentation.")
    args = parser.parse_args()
    config = load_train_config(args.config)
    options = config.training
    chunks = options.epochs * options.batches_per_epoch * options.speakers_per_batch * options.utts_per_speaker
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
