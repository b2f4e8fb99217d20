"""Training throughput: samples/s and the fraction of step time spent waiting for data.

    python bench/train_throughput.py                          # xvector and sinc_tdnn, 128 x 2 s, 20 steps
    python bench/train_throughput.py --models xvector --workers 0 2 --amp none bf16
    python bench/train_throughput.py --models xvector --workers 0 --amp bf16 --compile off on
    python bench/train_throughput.py --models xvector --workers 0 --amp bf16 --features waveform precomputed
    python bench/train_throughput.py --models ecapa_tdnn:channels=1024 resnet34 --amp bf16 fp16

Each configuration trains a fresh model for `--steps` steps (after `--warmup` steps that
are not timed) on a synthetic corpus of 130 speakers made on the fly, through the same
Trainer `spkverif train` uses, and reads its figures back from the JSON log. The device
is the GPU when there is one (pass --device cpu to force the CPU). With `--compile off on`
each configuration is trained eager and with its encoder compiled (`train --compile`; the
compilation falls in the untimed steps, the wall time holds it); with `--features waveform
precomputed` each is trained with its front end on every chunk and from features computed once
an utterance (`train --precompute-features`). Each row after the first of a model, workers and
amp gives its samples/s as a ratio to that first row's (eager, from waveforms), measured in the
same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from spkverif.base.progress import set_quiet
from spkverif.config import load_train_config, parse_override
from spkverif.stages.prepare.mini import MiniOptions, prepare_mini
from spkverif.stages.train import train


def model_settings(spec: str) -> tuple[str, list[str]]:
    """`ecapa_tdnn:channels=1024` -> ("ecapa_tdnn", ["model.channels=1024"]); a bare name has no options."""
    name, _, options = spec.partition(":")
    return name, [f"model.{option}" for option in options.split(",") if option]


def measure(
    data: Path,
    work: Path,
    model: str,
    workers: int,
    amp: str,
    compiled: bool,
    precomputed: bool,
    args: argparse.Namespace,
) -> dict:
    steps = args.warmup + args.steps
    model, model_options = model_settings(model)
    config = load_train_config(
        None,
        [
            parse_override(text)
            for text in (
                f"model.name={model}",
                f"training.speakers_per_batch={args.batch}",
                "training.utts_per_speaker=1",
                f"data.chunk_seconds={args.seconds}",
                "training.epochs=1",
                f"training.batches_per_epoch={steps}",
                f"training.log_every={args.steps}",
                f"data.num_workers={workers}",
                f"training.amp={amp}",
                f"training.device={args.device}",
                f"training.compile={compiled}",
                f"data.precompute_features={precomputed}",
                *model_options,
            )
        ],
    )
    label = ",".join([model, *(option.removeprefix("model.") for option in model_options)])
    # One experiment a row: ecapa_tdnn:channels=512 and :channels=1024 must not share one.
    exp = work / "-".join(
        (label.replace(",", "_").replace("=", ""), str(workers), amp, "compiled" if compiled else "eager",
         "precomputed" if precomputed else "waveform")
    )  # fmt: skip
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    train(config, data, exp)
    records = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["event"] == "step" and r["step"] == steps]
    if args.warmup and not timed:
        raise SystemExit("no timed window: make --steps divide --warmup + --steps")
    window = timed[-1]
    return {
        "model": label,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "workers": workers,
        "amp": amp,
        "compile": "on" if compiled else "off",
        "features": "precomputed" if precomputed else "waveform",
        "samples_per_s": window["samples_per_s"],
        "data_wait_fraction": window["data_wait_fraction"],
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=["xvector", "sinc_tdnn"], help="names, or NAME:key=value,... (model options)"
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--amp", nargs="+", default=["none"])
    parser.add_argument("--compile", nargs="+", choices=("off", "on"), default=["off"], help="train --compile")
    parser.add_argument(
        "--features", nargs="+", choices=("waveform", "precomputed"), default=["waveform"],
        help="the front end on every chunk, or train --precompute-features",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=128, help="chunks a step (distinct speakers)")
    parser.add_argument("--seconds", type=float, default=2.0, help="chunk length")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (a multiple of --steps)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    set_quiet(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        prepare_mini(
            work / "corpus",
            MiniOptions(num_speakers=args.batch + 4, num_test_speakers=2, utts_per_speaker=2, min_seconds=2.5,
                        max_seconds=4.0, num_trials=2, jobs=2),
        )  # fmt: skip
        print(
            f"{'model':<22} {'workers':>7} {'amp':>5} {'compile':>7} {'features':>11} {'samples/s':>10} {'ratio':>6} "
            f"{'data wait':>10} {'peak GiB':>9} {'wall s':>7}"
        )
        # off before on and waveform before precomputed: the first row of a group is the ratios' base
        variants = list(itertools.product(sorted(set(args.compile)), sorted(set(args.features), reverse=True)))
        for model, workers, amp in itertools.product(args.models, args.workers, args.amp):
            base = None
            for compiled, features in variants:
                on, precomputed = compiled == "on", features == "precomputed"
                row = measure(work / "corpus" / "train", work, model, workers, amp, on, precomputed, args)
                ratio = f"{row['samples_per_s'] / base:.2f}x" if base else ""
                base = base or row["samples_per_s"]
                print(
                    f"{row['model']:<22} {row['workers']:>7} {row['amp']:>5} {row['compile']:>7} {row['features']:>11} "
                    f"{row['samples_per_s']:>10.1f} {ratio:>6} {100 * row['data_wait_fraction']:>9.1f}% "
                    f"{row['peak_gib']:>9.2f} {row['seconds']:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
