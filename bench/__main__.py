"""Every side-by-side benchmark in one run, written to bench/results.md.

    bench/run.sh                      # the full sizes (about 15 minutes on 2 cores)
    python -m bench --tiny --out x.md # each benchmark at a tiny size (the smoke test)
    python -m bench --only scoring metrics

Figures (see each module's docstring for what is timed and against what):
training (bench/peer_train.py), features (peer_features.py), extraction
(peer_extract.py), toolkit-extraction (toolkit_extract.py), scoring
(peer_scoring.py), metrics (peer_metrics.py), and the data-loading figures of
bench/loader_throughput.py when that file exists. Each figure is the median of
interleaved rounds after a warm-up; peers that are not installed are left out
with the reason printed (`pip install .[bench]`; WeSpeaker, 3D-Speaker and
IDRnD's ReDimNet through bench/run.sh). The machine's peak (bench/flops.py) is measured first
when a figure with a limit column (training, extraction, toolkit-extraction) runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import peer_extract, peer_features, peer_metrics, peer_scoring, peer_train, toolkit_extract
from bench.common import Section, machine_line, peer_versions, table
from bench.flops import measure_peak

HERE = Path(__file__).resolve().parent
TINY_MODELS = {
    "channels": 32,
    "embedding_dim": 32,
    "aggregate_channels": 48,
    "attention_bottleneck": 8,
    "se_bottleneck": 8,
}
# The loader benchmark at a size that keeps bench/run.sh under 15 minutes: one worker (what each DataLoader
# worker does; the N-worker column only means something on the training node), 160 utterances (32 speakers:
# one batch of P = 32), medians of
# one 2 s window. `python bench/loader_throughput.py` alone runs its full default size.
LOADER_ARGUMENTS = ("--utterances", "160", "--workers", "1", "--seconds", "2", "--repeats", "1")
# The deep networks of the zoo beside their peers, batch 16 eager only, three timed steps: an opt-in figure
# (--only zoo-training).
ZOO_NETWORKS = ("resnet221", "resnet293", "eres2net")
OPT_IN = ("zoo-training",)
# The figures whose rows have a limit column (floating-point operations against the measured peak).
COUNTED = ("training", "extraction", "toolkit-extraction", "zoo-training")


def figures(tiny: bool) -> dict[str, Callable[[], Section]]:
    """Each figure's runner at the full or the tiny size, in the order they are run."""
    if tiny:
        return {
            "training": lambda: peer_train.run(
                peer_train.TrainSize(
                    batches=(2, 3),
                    frames=50,
                    classes=10,
                    networks=("xvector", "ecapa_tdnn c512", "resnet34", "campplus", "redimnet"),
                    compiled_batches=(),
                    tiny=True,
                    as_train_runs_rounds=0,  # a fresh process a network: tests/test_bench_smoke.py times one apart
                )
            ),
            "features": lambda: peer_features.run(peer_features.FeatureSize(utterances=3, seconds=1.0, rounds=2)),
            "extraction": lambda: peer_extract.run(
                peer_extract.ExtractSize(
                    utterances=3,
                    min_seconds=1.0,
                    max_seconds=1.5,
                    rounds=2,
                    warmup_utterances=1,
                    model_options=TINY_MODELS,
                )
            ),
            "toolkit-extraction": lambda: toolkit_extract.run(
                toolkit_extract.ToolkitExtractSize(
                    lengths=(1.0,), audio_seconds=1.0, rounds=1, networks=toolkit_extract.TINY_EXTRACTED, tiny=True
                )
            ),
            "scoring": lambda: peer_scoring.run(
                peer_scoring.ScoreSize(
                    lists=(peer_scoring.ScoreList("tiny", 60, 200),), cohort=50, dim=16, top_n=10, rounds=2
                )
            ),
            "metrics": lambda: peer_metrics.run(peer_metrics.MetricSize(trials=2000, speechbrain_trials=300, rounds=2)),
        }
    return {
        "training": lambda: peer_train.run(peer_train.TrainSize()),
        "features": lambda: peer_features.run(peer_features.FeatureSize()),
        "extraction": lambda: peer_extract.run(peer_extract.ExtractSize(utterances=40, rounds=3)),
        "toolkit-extraction": lambda: toolkit_extract.run(toolkit_extract.ToolkitExtractSize()),
        "scoring": lambda: peer_scoring.run(peer_scoring.ScoreSize(rounds=1)),
        "metrics": lambda: peer_metrics.run(peer_metrics.MetricSize()),
        # Not in the default run (bench/run.sh's 15 minutes): `--only zoo-training`.
        "zoo-training": lambda: peer_train.run(
            peer_train.TrainSize(
                batches=(16,),
                compiled_batches=(),
                networks=ZOO_NETWORKS,
                memory_networks=None,
                as_train_runs_rounds=0,
                batch_limits={"resnet293": 8},  # at 16 the two ResNet293 steps outgrew the 23 GiB here: 8
                rounds=3,  # one timed step of ResNet221 read 0.79-0.90x WeSpeaker's in two runs, three 1.06x
            )
        ),
    }


def loader_section(tiny: bool) -> Section | None:
    """The data-loading figures: bench/loader_throughput.py's own output, when that benchmark exists."""
    script = HERE / "loader_throughput.py"
    if not script.exists():
        print("data loading: bench/loader_throughput.py does not exist yet; left out", flush=True)
        return None
    section = Section("data loading")
    command = [sys.executable, str(script), *(["--help"] if tiny else LOADER_ARGUMENTS)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    section.lines.append(
        f"`{shlex.join(['python', 'bench/loader_throughput.py', *command[2:]])}` "
        f"(exit {result.returncode}, {time.perf_counter() - started:.0f} s):"
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    section.lines.append("\n```\n" + "\n".join(output[-40:]) + "\n```")
    print("\n".join(output[-40:]), flush=True)
    return section


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="Tiny sizes: checks the benchmarks run, times nothing.")
    parser.add_argument(
        "--only",
        nargs="+",
        help="Only these figures (training features extraction toolkit-extraction scoring metrics loading; "
        "zoo-training runs only when named).",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads [2].")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="Where the table goes.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine_before = machine_line()
    print(machine_before, flush=True)
    peak = None
    if not args.only or set(COUNTED) & set(args.only):
        peak = measure_peak(256, 16, 16, 2, 2) if args.tiny else measure_peak()
        print(peak.describe(), flush=True)
    sections = []
    for name, run in figures(args.tiny).items():
        if (args.only and name not in args.only) or (not args.only and name in OPT_IN):
            continue
        begun = time.perf_counter()
        print(f"== {name}", flush=True)
        sections.append(run())
        sections[-1].lines.append(f"({time.perf_counter() - begun:.0f} s for this figure)")
    if not args.only or "loading" in args.only:
        loading = loader_section(args.tiny)
        if loading is not None:
            sections.append(loading)
    load_after = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    arguments = shlex.join(argv if argv is not None else sys.argv[1:])
    command = os.environ.get("SPKVERIF_BENCH_COMMAND", "python -m bench") + " " + arguments
    text = "\n".join(
        [
            "# spkverif beside its peers",
            "",
            f"`{command.strip()}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {time.perf_counter() - started:.0f} s in all.",
            "",
            f"Machine: {machine_before}; load average after the run {load_after}.",
            "",
            f"Peers: {peer_versions()}.",
            "",
            "Ratio: how many times better spkverif is (peer time / ours, or our rate / the peer's); below 1 it loses.",
            "Against a floor, 1/ratio is how far above the floor spkverif is. Limit columns (rows with counted "
            "operations): GFLOP a sample or a second of audio, counted by torch's FlopCounterMode (matrix products "
            "and convolutions only: bench/flops.py), the GFLOP/s that gives at the row's rate, and its fraction of "
            + (f"the {peak.describe()}." if peak else "the machine's peak (not measured in this run)."),
            "",
            table(sections, peak.best if peak else None),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".md.tmp")
    temporary.write_text(text)
    temporary.replace(args.out)
    print(f"wrote {args.out}", flush=True)
    return args.out


if __name__ == "__main__":
    main()
