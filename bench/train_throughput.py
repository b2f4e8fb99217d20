"""Training throughput: chunks/s, data wait, peak memory and model FLOP utilisation.

    python bench/train_throughput.py                          # xvector and sinc_tdnn, 128 x 2 s, 10 steps
    python bench/train_throughput.py --models xvector --workers 0 2 --amp none bf16
    python bench/train_throughput.py --models xvector --workers 0 --amp bf16 --compile off on
    python bench/train_throughput.py --models xvector --workers 0 --amp bf16 --features waveform precomputed
    python bench/train_throughput.py --models ecapa_tdnn:channels=1024 resnet34 --amp bf16 fp16

    # what bench/gpu_check.sh measures on a GPU: today's eager bf16 training beside the whole
    # model compiled with CUDA graphs and channels-last memory, at two batch sizes
    python bench/train_throughput.py --models resnet34 --amp bf16 --workers 12 --batch 128 512 \\
        --compile off on --compile-mode reduce-overhead --channels-last \\
        --rows OUT/rows.jsonl --markdown OUT/throughput.md --json OUT/throughput.json
    python bench/train_throughput.py --table OUT/rows.jsonl          # the table of such rows again

Each configuration trains a fresh model for `--steps` steps (after `--warmup` steps that
are not timed) on a synthetic corpus of max(--batch) + 4 speakers made on the fly (or
`--data`), through the same Trainer `spkverif train` uses, and reads its chunks/s and
data-wait fraction (the time a step waits for its batch over the window's time) back from
the JSON log. The device is the GPU when there is one (pass --device cpu to force the CPU).

`--compile on` alone is `train --compile` (the encoder, torch.compile's default mode). With
`--compile-mode MODE` the bench compiles instead the whole model, Kaldi fbank front end
included, in MODE, its batch dimension dynamic, so one compilation serves every `--batch`
(each row starts from a fresh torch.compile state; the compiled graphs come from inductor's
cache); `--channels-last` puts the compiled rows' 2-D networks (those with a Conv2d) in
channels-last memory, and compiled rows run with cuDNN's autotuner on. With `--features
waveform precomputed` each is trained with its front end on every chunk and from features
computed once an utterance (`train --precompute-features`). Each row after the first of a
model, batch, workers and amp gives its chunks/s as a ratio to that first row's (eager, from
waveforms), measured in the same run.

FLOPs a chunk are counted by torch's FlopCounterMode over one forward and backward pass of
the network and its loss head (matrix products and convolutions; the FFT and element-wise
work are not counted); utilisation is chunks/s x that / the card's published dense bf16 peak
(`PEAK_BF16_TFLOPS`, found by the card's name), or, on the CPU or an unknown card, a peak
measured here by a large matrix product. `--rows FILE` appends each row to FILE as it is
measured and remakes the table of FILE's rows (a process killed half-way loses the row it was
measuring alone); `--table` makes the table of such files. The table prices the VoxCeleb2 epoch
at ResNet34's rates.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import soundfile
import torch
from torch import nn

from bench.gpu_estimate import epoch_projection, step_flops
from spkverif.base.progress import set_quiet
from spkverif.config import load_train_config, parse_override
from spkverif.io.datadir import DataDir
from spkverif.training.trainer import Trainer

#: Published dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a part of the card's name;
#: the first that the name holds counts ("NVIDIA H100 80GB HBM3" is the SXM card).
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))

#: torch.compile's modes that record CUDA graphs.
GRAPH_MODES = ("reduce-overhead", "max-autotune")

COLUMNS = (
    "network", "batch", "compile", "channels-last", "CUDA graphs", "chunks/s", "× eager", "data wait",
    "peak GiB", "GFLOP/chunk", "TFLOP/s", "MFU",
)  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """One row's configuration."""

    model: str  # NAME or NAME:key=value,...
    batch: int
    workers: int
    amp: str
    compiled: bool
    precomputed: bool


def model_settings(spec: str) -> tuple[str, list[str]]:
    """`ecapa_tdnn:channels=1024` -> ("ecapa_tdnn", ["model.channels=1024"]); a bare name has no options.
    A list's commas stay inside its brackets: `campplus:block_layers=[1,1,1]`."""
    name, _, options = spec.partition(":")
    return name, [f"model.{option}" for option in re.split(r",(?![^\[]*\])", options) if option]


def synthetic_corpus(path: Path, speakers: int, seconds: float = 3.0, rate: int = 16000) -> Path:
    """A data directory at `path` of `speakers` speakers with two `seconds` WAV utterances each
    (noise shaped per speaker; the throughput does not depend on what is said), audio in path/audio."""
    rng = np.random.default_rng(0)
    audio = path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    wav_scp, utt2spk = {}, {}
    length = round(seconds * rate)
    for speaker in range(speakers):
        spk = f"spk{speaker:04d}"
        for index in range(2):
            utt = f"{spk}-{index}"
            noise = rng.standard_normal(length)
            samples = np.convolve(noise, rng.standard_normal(8 + speaker % 16), mode="same")
            soundfile.write(audio / f"{utt}.wav", (0.3 * samples / np.abs(samples).max()).astype(np.float32), rate)
            wav_scp[utt], utt2spk[utt] = str(audio / f"{utt}.wav"), spk
    DataDir(wav_scp, utt2spk, utt2dur=dict.fromkeys(wav_scp, seconds)).save(path)
    return path


def device_peak(device: torch.device) -> tuple[float, str]:
    """(TFLOP/s, where the figure comes from): the card's published dense bf16 peak, or one
    measured here by a square matrix product (float32 on the CPU, bf16 on an unknown card)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for part, tflops in PEAK_BF16_TFLOPS:
            if part in name:
                return tflops, f"{name}: published dense bf16 peak"
    size, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    repeats, started = 10, time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tflops = 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12
    what = f"CPU, torch threads: {torch.get_num_threads()}"
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    return tflops, f"{what}: measured, {str(dtype).removeprefix('torch.')} {size}³ matrix product"


def two_dimensional(model: nn.Module) -> bool:
    """Whether `model` has 2-D convolutions (ResNets, CAM++'s front), which channels-last memory concerns."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def compile_whole(model: nn.Module, mode: str, backend: str, channels_last: bool) -> None:
    """Compile `model` (front end and encoder) in place in `mode`, its input's batch dimension
    dynamic, after putting it in channels-last memory with `channels_last`. The parameters stay
    the same objects (the optimiser's), and the state dict keeps its names."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model.forward, backend=backend, **({"mode": mode} if backend == "inductor" else {}))

    def forward(waveforms: torch.Tensor, *rest):
        torch._dynamo.maybe_mark_dynamic(waveforms, 0)
        return compiled(waveforms, *rest)

    model.forward = forward


def cudagraph_skips() -> int:
    """How many times inductor has declined CUDA graphs in this process so far."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def peak_memory_gib(cuda: bool) -> float:
    """The GPU's peak allocated memory since the last reset, or the process's peak resident set on the CPU."""
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def measure(data: Path, work: Path, setting: Setting, args: argparse.Namespace) -> dict:
    steps = args.warmup + args.steps
    model, model_options = model_settings(setting.model)
    whole = setting.compiled and args.compile_mode is not None
    config = load_train_config(
        None,
        [
            parse_override(text)
            for text in (
                f"model.name={model}",
                f"training.speakers_per_batch={setting.batch}",
                "training.utts_per_speaker=1",
                f"data.chunk_seconds={args.seconds}",
                "training.epochs=1",
                f"training.batches_per_epoch={steps}",
                f"training.log_every={args.steps}",
                f"data.num_workers={setting.workers}",
                f"training.amp={setting.amp}",
                f"training.device={args.device}",
                f"training.compile={setting.compiled and not whole}",
                f"data.precompute_features={setting.precomputed}",
                *model_options,
            )
        ],
    )
    label = ",".join([model, *(option.removeprefix("model.") for option in model_options)])
    compile_name = args.compile_mode if whole else ("on" if setting.compiled else "off")
    # One experiment a row: ecapa_tdnn:channels=512 and :channels=1024 must not share one.
    exp = work / "-".join(
        (re.sub(r"[^\w.]+", "_", label), str(setting.batch), str(setting.workers), setting.amp, compile_name,
         "precomputed" if setting.precomputed else "waveform")
    )  # fmt: skip
    trainer = Trainer(config, data, exp)
    cuda = trainer.device.type == "cuda"
    channels_last = whole and args.channels_last and two_dimensional(trainer.parts.model)
    if whole:
        compile_whole(trainer.parts.model, args.compile_mode, args.compile_backend, channels_last)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark or whole
    skips = cudagraph_skips()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    try:
        trainer.run()
    finally:
        torch.backends.cudnn.benchmark = benchmark
    seconds = time.monotonic() - started
    peak = peak_memory_gib(cuda)
    graphs = "off"
    if whole and cuda and args.compile_backend == "inductor" and args.compile_mode in GRAPH_MODES:
        graphs = "on" if cudagraph_skips() == skips else "skipped"
    del trainer
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    records = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["event"] == "step" and r["step"] == steps]
    if args.warmup and not timed:
        raise SystemExit("no timed window: make --steps divide --warmup + --steps")
    window = timed[-1]
    return {
        "model": label,
        "batch": setting.batch,
        "workers": setting.workers,
        "amp": setting.amp,
        "compile": compile_name,
        "channels_last": "on" if channels_last else "off",
        "cuda_graphs": graphs,
        "features": "precomputed" if setting.precomputed else "waveform",
        "samples_per_s": window["samples_per_s"],
        "data_wait_fraction": window["data_wait_fraction"],
        "peak_gib": peak,
        "peak_memory": "GPU, max_memory_allocated" if cuda else "CPU, the process's peak resident set",
        "seconds": seconds,
    }


def flops_per_chunk(data: Path, spec: str, seconds: float) -> float:
    """FLOPs of one forward and backward pass of network `spec` and its AAM head over `data`'s speakers, a chunk."""
    model, model_options = model_settings(spec)
    texts = (f"model.name={model}", f"data.chunk_seconds={seconds}", *model_options)
    config = load_train_config(None, [parse_override(text) for text in texts])
    speakers = len(set((data / "utt2spk").read_text().split()[1::2]))
    return step_flops(config, speakers, batch=2)


def row_line(row: dict, ratio: str) -> str:
    return (
        f"{row['model']:<26} {row['batch']:>5} {row['workers']:>7} {row['amp']:>5} {row['compile']:>15} "
        f"{row['channels_last']:>5} {row['cuda_graphs']:>7} {row['features']:>11} {row['samples_per_s']:>10.1f} "
        f"{ratio:>6} {100 * row['data_wait_fraction']:>9.1f}% {row['peak_gib']:>9.2f} {row['mfu']:>7.2%} "
        f"{row['seconds']:>7.1f}"
    )


def run_rows(args: argparse.Namespace) -> None:
    set_quiet(True)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    peak, peak_source = device_peak(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; peak {peak:.4g} TFLOP/s "
          f"({peak_source})")  # fmt: skip
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        data = Path(args.data) if args.data else work / "corpus"
        if not data.exists():
            data = synthetic_corpus(data, max(args.batch) + 4)
        print(
            f"{'model':<26} {'batch':>5} {'workers':>7} {'amp':>5} {'compile':>15} {'c-l':>5} {'graphs':>7} "
            f"{'features':>11} {'chunks/s':>10} {'ratio':>6} {'data wait':>10} {'peak GiB':>9} {'MFU':>7} {'wall s':>7}"
        )
        # off before on and waveform before precomputed: the first row of a group is the ratios' base
        variants = list(itertools.product(sorted(set(args.compile)), sorted(set(args.features), reverse=True)))
        for model in args.models:
            flops = flops_per_chunk(data, model, args.seconds)
            for batch, workers, amp in itertools.product(args.batch, args.workers, args.amp):
                base = None
                for compiled, features in variants:
                    setting = Setting(model, batch, workers, amp, compiled == "on", features == "precomputed")
                    row = measure(data, work, setting, args)
                    row["ratio"] = row["samples_per_s"] / base if base else None
                    base = base or row["samples_per_s"]
                    row["gflop_per_chunk"] = flops / 1e9
                    row["tflop_per_s"] = row["samples_per_s"] * flops / 1e12
                    row.update(mfu=row["tflop_per_s"] / peak, peak_tflop_per_s=peak, peak_source=peak_source,
                               device=str(device), torch=torch.__version__)  # fmt: skip
                    print(row_line(row, f"{row['ratio']:.2f}x" if row["ratio"] else ""), flush=True)
                    if args.rows:
                        with open(args.rows, "a", encoding="utf-8") as handle:
                            handle.write(json.dumps(row) + "\n")
                        write_table([args.rows], args.markdown, args.json)


def figure(value: float | None, form: str = "") -> str:
    """`value` in `form`, or by default to the unit from 100 up and to 3 figures below; "—" for none."""
    if value is None or not math.isfinite(value):
        return "—"
    return format(value, form or (",.0f" if abs(value) >= 100 else ".3g"))


def table(rows: list[dict]) -> tuple[str, dict]:
    """The markdown table of measured rows, with the VoxCeleb2 epoch priced at ResNet34's best rate
    at each batch size, and the same as JSON."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 3 + "---|---|" + "---:|" * 7]
    for row in rows:
        cells = (
            row["model"], str(row["batch"]), row["compile"], row["channels_last"], row["cuda_graphs"],
            figure(row["samples_per_s"]), figure(row["ratio"], ".2f") + ("×" if row["ratio"] else ""),
            figure(100 * row["data_wait_fraction"], ".1f") + "%", figure(row["peak_gib"], ".2f"),
            figure(row["gflop_per_chunk"]), figure(row["tflop_per_s"]), figure(100 * row["mfu"], ".1f") + "%",
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    notes = sorted(
        {
            f"{row['peak_source']} ({row['peak_tflop_per_s']:.4g} TFLOP/s); peak memory: {row['peak_memory']}; "
            f"torch {row['torch']}; loader workers: {row['workers']}; amp {row['amp']}"
            for row in rows
        }
    )
    projections = []
    for batch in sorted({row["batch"] for row in rows if row["model"].split(",")[0] == "resnet34"}):
        best = max((r for r in rows if r["model"].split(",")[0] == "resnet34" and r["batch"] == batch),
                   key=lambda r: r["samples_per_s"])  # fmt: skip
        projection = epoch_projection(best["samples_per_s"])
        projections.append({"batch": batch, "compile": best["compile"], **projection})
        lines.append("")
        lines.append(
            f"ResNet34 at batch {batch} ({figure(best['samples_per_s'])} chunks/s, compile {best['compile']}): "
            f"a VoxCeleb2 epoch ({projection['utterances']:,} utterances, one {projection['chunk_seconds']:g} s "
            f"chunk each) {projection['epoch_hours']:.2f} h; the recipe's resnet34_aam schedule "
            f"({projection['schedule_chunks']:,} chunks a GPU) {projection['schedule_hours']:.1f} h on this device"
        )
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n", {"columns": list(COLUMNS), "rows": rows, "projections": projections}


def write_table(paths: list[str], markdown_path: str | None, json_path: str | None) -> str:
    """The table of the rows in the --rows files `paths`, written where asked; returned."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"train_throughput.py: no rows in {', '.join(paths)}")
    markdown, document = table(rows)
    if markdown_path:
        Path(markdown_path).write_text(markdown, encoding="utf-8")
    if json_path:
        Path(json_path).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=["xvector", "sinc_tdnn"], help="names, or NAME:key=value,... (model options)"
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--amp", nargs="+", default=["none"])
    parser.add_argument("--compile", nargs="+", choices=("off", "on"), default=["off"], help="train --compile")
    parser.add_argument("--compile-mode", help="with --compile on: the whole model compiled in this torch.compile mode")
    parser.add_argument("--compile-backend", default="inductor", help="with --compile-mode: torch.compile's backend")
    parser.add_argument("--channels-last", action="store_true", help="with --compile-mode: 2-D networks channels-last")
    parser.add_argument(
        "--features", nargs="+", choices=("waveform", "precomputed"), default=["waveform"],
        help="the front end on every chunk, or train --precompute-features",
    )  # fmt: skip
    parser.add_argument("--batch", nargs="+", type=int, default=[128], help="chunks a step (distinct speakers)")
    parser.add_argument("--seconds", type=float, default=2.0, help="chunk length")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (a multiple of --steps)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", help="a training data directory (made here, synthetic, where absent)")
    parser.add_argument("--rows", help="append each measured row to this JSON-lines file")
    parser.add_argument("--table", nargs="+", metavar="ROWS", help="only make the table of these --rows files")
    parser.add_argument("--markdown", help="write the table (of --table, or of --rows after each row) here")
    parser.add_argument("--json", help="write the table's rows and projections here as JSON")
    args = parser.parse_args()
    if args.table:
        print(write_table(args.table, args.markdown, args.json), end="")
    else:
        run_rows(args)


if __name__ == "__main__":
    main()
