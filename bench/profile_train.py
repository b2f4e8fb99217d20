"""Where a training step's time goes: torch.profiler over spkverif's step and each peer's, side by side.

The step is figure 1's (bench/peer_train.py): fbank features (B, 200, 80), the
network, an AAM head over 1,000 classes, SGD. Each side takes a warm-up step,
then --steps profiled steps; the operators with the most time of their own are
printed for each side, largest first. The peers are those of bench/peer_train.py
(SpeechBrain; WeSpeaker, 3D-Speaker and IDRnD where their checkouts are on PYTHONPATH,
as bench/run.sh puts them).

    python bench/profile_train.py                               # ecapa_tdnn c512 and resnet34, batch 16
    python bench/profile_train.py --models campplus --batch 64 --top 20
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.profiler import ProfilerActivity, profile

from bench.peer_train import Pair, TrainSize, build_network, fbank_batch, pairs, training_step


def self_times(pair: Pair, side: str, batch: int, steps: int) -> Counter:
    """Self CPU time (ms a step) of each operator over `steps` profiled steps."""
    size = TrainSize()
    network, dim = build_network(pair, side, tiny=False)
    features, labels = fbank_batch(batch, size.frames, pair.feat_dim, 0)
    step = training_step(network, dim, features, labels, size.classes)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    times: Counter = Counter()
    for event in profiler.key_averages():
        times[event.key] += event.self_cpu_time_total / 1000 / steps
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="*", default=["ecapa_tdnn c512", "resnet34"], help="bench/peer_train.py labels"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="Profiled steps a side [3].")
    parser.add_argument("--top", type=int, default=12, help="Operators printed [12].")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for pair in pairs(TrainSize(networks=tuple(args.models))):
        for problem in pair.problems:
            print(f"{pair.label}: {problem}")
        if not pair.ours:
            continue
        sides = ["ours", *pair.peers]
        times = {side: self_times(pair, side, args.batch, args.steps) for side in sides}
        totals = ", ".join(f"{sum(times[side].values()):.0f} {side}" for side in sides)
        print(f"\n== {pair.label}, batch {args.batch}: ms a step, {totals}")
        print("operator | " + " | ".join(sides))
        keys = set().union(*times.values())
        for key in sorted(keys, key=lambda k: -max(times[side][k] for side in sides))[: args.top]:
            print(f"{key} | " + " | ".join(f"{times[side][key]:.1f}" for side in sides))


if __name__ == "__main__":
    main()
