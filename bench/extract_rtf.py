"""Extraction real-time factor of every network at full size: seconds of audio per second of compute.

Each registered network (`spkverif list models`; ECAPA-TDNN also at C 1024) is built at its
default size with random weights (speed does not depend on the weights); a network whose
front end needs files from outside (a self-supervised model's directory) is left out with
the reason printed. Each is saved as a model file, exported to TorchScript and ONNX
(`spkverif.stages.export`), and each file is run through the extract stage
(`spkverif.stages.extract.extract`: reading the audio, the forward pass, writing the ark)
on one recording of --seconds; the best of --repeats runs counts. `pytorch` is the
model file run by PyTorch, `torchscript` the traced file run by libtorch, `onnx`
the ONNX file run by onnxruntime (CPU provider). The machine's load average is
printed beside the figures, since a shared machine slows them.

    python bench/extract_rtf.py                       # 60 s, whole-utterance embeddings, CPU
    python bench/extract_rtf.py --window 3 --step 0.1 # the paper's sliding windows
    python bench/extract_rtf.py --runtimes pytorch onnx --models xvector
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import set_quiet
from spkverif.models import MODELS, build_model, count_parameters
from spkverif.stages.export import export_model
from spkverif.stages.extract import extract
from spkverif.training.checkpoint import model_payload, save_atomic

# Beside every registered network at its defaults: the sizes the published recipes also train.
EXTRA_SIZES = {"ecapa_tdnn": [{"channels": 1024}]}


def networks(names: list[str] | None) -> list[tuple[str, dict]]:
    """(name, options) of every registered network at its defaults, then its `EXTRA_SIZES`; only `names` if given."""
    chosen = [name for name in MODELS.names() if not names or name in names]
    return [(name, options) for name in chosen for options in [{}, *EXTRA_SIZES.get(name, [])]]


RUNTIME_FILES = {"pytorch": "model.pt", "torchscript": "model.ts", "onnx": "model.onnx"}


def _label(name: str, options: dict) -> str:
    return name + "".join(f" {key}={value}" for key, value in options.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of the recording.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per network; the fastest counts.")
    parser.add_argument("--window", type=float, help="Sliding window (s), as `extract --window`.")
    parser.add_argument("--step", type=float, help="Window step (s), as `extract --step`.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--threads", type=int, help="torch intra-op threads [default: torch's choice].")
    parser.add_argument("--models", nargs="*", help="Only these model names.")
    parser.add_argument(
        "--runtimes",
        nargs="*",
        default=list(RUNTIME_FILES),
        choices=list(RUNTIME_FILES),
        help="Which model files to run [default: all].",
    )
    args = parser.parse_args()

    set_quiet(True)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    mode = "whole utterance" if args.window is None else f"window {args.window:g} s, step {args.step or 0.1:g} s"
    print(
        f"# {args.seconds:g} s of audio, {mode}, device {args.device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}"
    )
    print(f"| {'network':<28} | parameters | runtime     | best (s) | real-time factor | vs pytorch |")
    print(f"|{'-' * 30}|-----------:|:------------|---------:|-----------------:|-----------:|")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        audio = np.random.default_rng(0).uniform(-0.3, 0.3, round(args.seconds * 16000)).astype(np.float32)
        soundfile.write(root / "rec.wav", audio, 16000, subtype="PCM_16")
        (root / "wav.scp").write_text(f"rec {root / 'rec.wav'}\n")
        for name, options in networks(args.models):
            torch.manual_seed(0)
            try:
                model = build_model(name, options)
            except SpkverifError as error:  # a front end that needs files from outside
                print(f"# {_label(name, options)}: left out: {error}")
                continue
            save_atomic(model_payload(model), root / "model.pt")
            size = count_parameters(model) / 1e6
            reference = None
            for runtime in args.runtimes:
                path = root / RUNTIME_FILES[runtime]
                if runtime != "pytorch":
                    export_model(root / "model.pt", path, runtime)
                best = float("inf")
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    extract(
                        path,
                        f"scp:{root / 'wav.scp'}",
                        f"ark:{root / 'emb.ark'}",
                        device=args.device,
                        window=args.window,
                        step=args.step,
                    )
                    best = min(best, time.perf_counter() - started)
                rtf = args.seconds / best
                reference = rtf if runtime == "pytorch" else reference
                ratio = f"{rtf / reference:9.2f}x" if reference else f"{'-':>10}"
                label = _label(name, options)
                print(f"| {label:<28} | {size:9.2f}M | {runtime:<11} | {best:8.2f} | {rtf:16.1f} | {ratio} |")
    print(f"# load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
