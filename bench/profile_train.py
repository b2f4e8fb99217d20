"""Where a training step's time goes: torch.profiler over spkverif's step and SpeechBrain's, side by side.

The step is figure 1's (bench/peer_train.py): 16 × 2 s raw waveforms, features
inside the model, an AAM head over 1,000 classes, SGD. Each side takes a warm-up
step, then --steps profiled steps; the operators with the most time of their own
are printed for each, and the totals of the operator families that differ most.

    python bench/profile_train.py                         # ecapa_tdnn and resnet34, 2 threads
    python bench/profile_train.py --models xvector --top 20
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.profiler import ProfilerActivity, profile

from bench.peer_train import TrainSize, _build, training_step


def self_times(name: str, side: str, steps: int) -> Counter:
    """Self CPU time (ms a step) of each operator over `steps` profiled steps."""
    size = TrainSize()
    model, dim = _build(name, side, size)
    step = training_step(model, dim, size, seed=0)
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
    parser.add_argument("--models", nargs="*", default=["ecapa_tdnn", "resnet34"])
    parser.add_argument("--steps", type=int, default=3, help="Profiled steps a side [3].")
    parser.add_argument("--top", type=int, default=12, help="Operators printed a side [12].")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        ours = self_times(name, "ours", args.steps)
        try:
            theirs = self_times(name, "speechbrain", args.steps)
        except ImportError as error:
            print(f"{name}: SpeechBrain not installed ({error})")
            theirs = Counter()
        print(f"\n== {name}: ms a step, {sum(ours.values()):.0f} ours, {sum(theirs.values()):.0f} SpeechBrain")
        print("operator | ours | SpeechBrain | SpeechBrain − ours")
        for key in sorted(set(ours) | set(theirs), key=lambda k: -max(ours[k], theirs[k]))[: args.top]:
            print(f"{key} | {ours[key]:.1f} | {theirs[key]:.1f} | {theirs[key] - ours[key]:+.1f}")


if __name__ == "__main__":
    main()
