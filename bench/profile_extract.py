"""Where the extraction figure's time goes: cProfile of the `extract` stage and of SpeechBrain's loop.

    python bench/profile_extract.py                  # 40 utterances of 4-8 s, 2 threads
    python bench/profile_extract.py --utterances 100 --top 15

Both contestants of bench/peer_extract.py (ecapa_tdnn C = 512 with random
weights; SpeechBrain's EncoderClassifier over its ECAPA_TDNN of the same size)
run once untimed on the utterances, then once under cProfile on the same
utterances (so every length has been seen: the network's kernels are built).
The functions with the most time of their own are printed for each. Then the
cost of a length the process has not seen: our network's forward on 6 s
inputs, the median of 9 calls on one length against 9 calls on 9 new lengths,
and its floating-point operations (torch's FlopCounterMode) and rate. Last, the
same two costs for the plain network and three alternatives: each convolution on a
padded length bucket (what extract runs on the CPU), the frozen graph extract switches to
after `FREEZE_AFTER_SECONDS` (`spkverif.runtime.pytorch.freeze_for_cpu`), and one thread.

    python bench/profile_extract.py --buckets resnet34 campplus ecapa_tdnn

only times the forward of each named network (bench/peers.py's, at the peer's
size, random weights) on utterances of 1.5 to 30 s, a new length every call: plain,
with extract's length buckets (its 1-d convolutions), and with every convolution
bucketed (the 2-d ones too), so the choice of `spkverif.runtime.buckets` can be
checked on any machine.

    python bench/profile_extract.py --freeze resnet34 campplus "ecapa_tdnn c512" eres2netv2

times what a model file of each named network (front end included) costs on the CPU:
opening it (`extract`'s loading), then its forward three ways: plain (the network as
built, length buckets only), eager as `extract` starts (BatchNorms folded, channels-last
weights: `spkverif.runtime.pytorch.PytorchEmbedder.from_file`) and frozen
(`spkverif.runtime.pytorch.freeze_for_cpu`, what `extract` switches to after
`FREEZE_AFTER_SECONDS` of forward time): the tracing, freezing and checking, then the
median of 3 calls at 2, 6 and 30 s, each on a new length, and the largest difference
from plain, relative to its largest value. Then onnxruntime on the model file's ONNX export,
on the same inputs, after the PyTorch forwards (not interleaved: a live session's spinning
threads slow what runs beside it): the session's making and its medians against eager.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.audio import utterances, write_wav_scp
from bench.peer_extract import speechbrain_classifier, speechbrain_loop
from spkverif.base.progress import set_quiet
from spkverif.models import build_model
from spkverif.runtime.buckets import bucket_convolutions
from spkverif.runtime.pytorch import freeze_for_cpu, run_frozen
from spkverif.stages.export import export_model
from spkverif.stages.extract import extract
from spkverif.training.checkpoint import model_payload, save_atomic


def profile(label: str, function, top: int, audio_seconds: float) -> None:
    function()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    function()
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"\n== {label}: {elapsed:.3f} s under cProfile, {audio_seconds / elapsed:.1f} × real time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def new_length_cost(model: torch.nn.Module, samples: int = 96_000, first_new: int = 0) -> tuple[float, float]:
    """Median seconds of a forward on one repeated length, and on lengths new to the process
    (`samples` plus 10 ms frames numbered from `first_new`; callers keep them apart)."""

    def once(length: int) -> float:
        waveform = torch.randn(1, length) * 0.1
        started = time.perf_counter()
        model(waveform)
        return time.perf_counter() - started

    with torch.inference_mode():
        for _ in range(3):
            once(samples)
        same = statistics.median(once(samples) for _ in range(9))
        new = statistics.median(once(samples + 160 * (first_new + k + 1)) for k in range(9))
    return same, new


def variants(model: torch.nn.Module, threads: int) -> None:
    """The forward on 6 s, seen and new lengths, of the plain network (no length buckets),
    of the network as extract runs it on the CPU (`spkverif.runtime.buckets`), and of two
    other alternatives, with the largest difference of their embeddings from the plain one."""
    probe = torch.randn(1, 96_000 - 555) * 0.1
    with torch.inference_mode():
        reference = model(probe)
    copy = build_model("ecapa_tdnn", {}).eval()
    copy.load_state_dict(model.state_dict())
    frozen = freeze_for_cpu(copy)
    assert frozen is not None, "ECAPA-TDNN freezes (tests/test_models.py)"
    bucketed = build_model("ecapa_tdnn", {}).eval()
    bucketed.load_state_dict(model.state_dict())
    bucket_convolutions(bucketed)
    rows = [
        ("plain (eager, no length buckets)", model, threads),
        ("each convolution on a padded length bucket (as extract runs it on the CPU)", bucketed, threads),
        ("frozen graph, as extract runs it after FREEZE_AFTER_SECONDS", partial(run_frozen, frozen), threads),
        ("plain, 1 thread", model, 1),
    ]
    print("\nvariant | ms on a seen length | ms on a new length | largest |embedding difference|")
    for index, (label, network, count) in enumerate(rows, start=1):
        torch.set_num_threads(count)
        with torch.inference_mode():
            difference = (network(probe) - reference).abs().max().item()
        same, new = new_length_cost(network, first_new=20 * index)
        print(f"{label} | {1000 * same:.1f} | {1000 * new:.1f} | {difference:.1e}")
    torch.set_num_threads(threads)


def bucket_sweep(labels: list[str], seconds: tuple[float, ...] = (1.5, 3, 5, 8, 12, 20, 30)) -> None:
    """Median ms of each network's forward at each length (4 calls, each a new length),
    plain, with extract's buckets, and with every convolution bucketed."""
    from bench.peers import PEER_NETWORKS
    from spkverif.runtime.buckets import _crop, _pad

    print("network | seconds | plain ms | extract's buckets (1-d) ms | every convolution bucketed ms")
    for label in labels:
        network = next(item for item in PEER_NETWORKS if item.label == label)
        torch.manual_seed(0)
        plain = network.build_ours(False).eval().encoder
        ours, every = copy.deepcopy(plain), copy.deepcopy(plain)
        bucket_convolutions(ours)
        for layer in every.modules():
            if isinstance(layer, torch.nn.Conv1d | torch.nn.Conv2d) and layer.padding_mode == "zeros":
                layer.register_forward_pre_hook(_pad)
                layer.register_forward_hook(_crop)
        for length in seconds:
            times: dict[str, list[float]] = {"plain": [], "ours": [], "every": []}
            for call in range(4):
                features = torch.randn(1, round(100 * length) + 3 * call, network.feat_dim)
                for name, module in (("plain", plain), ("ours", ours), ("every", every)):
                    started = time.perf_counter()
                    with torch.inference_mode():
                        module(features)
                    times[name].append(1000 * (time.perf_counter() - started))
            cells = " | ".join(f"{statistics.median(times[name]):.0f}" for name in times)
            print(f"{label} | {length:g} | {cells}", flush=True)


def freeze_sweep(labels: list[str], seconds: tuple[float, ...] = (2, 6, 30)) -> None:
    """Plain eager, prepared eager and frozen (module doc), each network a model file."""
    import numpy as np

    import spkverif.runtime.pytorch as runtime
    from bench.peers import PEER_NETWORKS
    from spkverif.models.files import load_model

    print("network | seconds | plain ms | eager ms | frozen ms | plain / eager | plain / frozen | largest |difference|")
    with tempfile.TemporaryDirectory() as scratch:
        for label in labels:
            network = next(item for item in PEER_NETWORKS if item.label == label)
            torch.manual_seed(0)
            path = Path(scratch) / "model.pt"
            save_atomic(model_payload(network.build_ours(False).eval()), path)
            opening = []
            for _ in range(5):
                started = time.perf_counter()
                eager = runtime.PytorchEmbedder.from_file(path, "cpu")
                opening.append(1000 * (time.perf_counter() - started))
            print(f"{label}: opening the model file took {statistics.median(opening):.0f} ms (median of 5)")
            plain = runtime.PytorchEmbedder(load_model(path), torch.device("cpu"))  # neither folded nor channels-last
            bucket_convolutions(plain.model)
            frozen = runtime.PytorchEmbedder.from_file(path, "cpu")
            started = time.perf_counter()
            frozen.frozen = runtime.freeze_for_cpu(frozen.model)
            print(f"{label}: tracing, freezing and checking took {time.perf_counter() - started:.1f} s", flush=True)
            embedders = {"plain": plain, "eager": eager, "frozen": frozen}
            for embedder in embedders.values():
                embedder.eager_seconds = None  # never freezes of itself
            rng = np.random.default_rng(0)
            eager_ms: dict[float, float] = {}
            waves: dict[float, list[np.ndarray]] = {}
            for length in seconds:
                times: dict[str, list[float]] = {name: [] for name in embedders}
                difference = 0.0
                for call in range(3):
                    wave = 0.1 * rng.standard_normal((1, round(16000 * length) + 161 * call + 7), dtype=np.float32)
                    waves.setdefault(length, []).append(wave)
                    outputs = []
                    for name, embedder in embedders.items():
                        started = time.perf_counter()
                        outputs.append(embedder(wave))
                        times[name].append(1000 * (time.perf_counter() - started))
                    scale = float(np.abs(outputs[0]).max())
                    difference = max(
                        difference, *(float(np.abs(out - outputs[0]).max()) / scale for out in outputs[1:])
                    )
                ms = [statistics.median(times[name]) for name in times]
                eager_ms[length] = ms[1]
                print(
                    f"{label} | {length:g} | {ms[0]:.0f} | {ms[1]:.0f} | {ms[2]:.0f} | {ms[0] / ms[1]:.2f} | "
                    f"{ms[0] / ms[2]:.2f} | {difference:.1e}",
                    flush=True,
                )
            del plain, eager, frozen, embedders
            onnxruntime_sweep(label, path, waves, eager_ms)


def onnxruntime_sweep(label: str, path: Path, waves: dict[float, list], eager_ms: dict[float, float]) -> None:
    """onnxruntime on the model file's ONNX export (`spkverif export`), timed on `waves` after the PyTorch
    forwards and alone: a live session's spinning threads slow whatever runs beside it, so the two are not
    interleaved. Prints the session's making and each length's median against `eager_ms`."""
    try:
        from spkverif.runtime.onnx import OnnxEmbedder
    except ImportError as error:
        print(f"{label}: onnxruntime not installed ({error}); its column is left out")
        return
    onnx_path = path.with_suffix(".onnx")
    export_model(path, onnx_path)
    started = time.perf_counter()
    session = OnnxEmbedder.from_file(onnx_path, "cpu")
    print(f"{label}: opening the ONNX export took {1000 * (time.perf_counter() - started):.0f} ms")
    for length, batch in waves.items():
        times = []
        for wave in batch:
            started = time.perf_counter()
            session(wave)
            times.append(1000 * (time.perf_counter() - started))
        ms = statistics.median(times)
        print(f"{label} | {length:g} | onnxruntime {ms:.0f} ms | eager / onnxruntime speed {ms / eager_ms[length]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=40, help="Utterances of 4-8 s [40].")
    parser.add_argument("--threads", type=int, default=2, help="torch threads [2].")
    parser.add_argument("--top", type=int, default=12, help="Functions printed a profile [12].")
    parser.add_argument("--buckets", nargs="+", metavar="NETWORK", help="Only the length-bucket sweep of these.")
    parser.add_argument(
        "--freeze",
        nargs="+",
        metavar="NETWORK",
        help="Only plain, eager and frozen forwards of these, then onnxruntime on their export.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.freeze:
        freeze_sweep(args.freeze)
        return
    if args.buckets:
        bucket_sweep(args.buckets)
        return
    set_quiet(True)
    logging.getLogger("spkverif").setLevel(logging.WARNING)
    waves, source = utterances(args.utterances, 4.0, 8.0, seed=2)
    audio_seconds = sum(len(wave) for wave in waves) / 16000
    print(f"{args.utterances} utterances, {audio_seconds:.0f} s of audio ({source}), {args.threads} threads")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scp = write_wav_scp(waves, root / "wav")
        torch.manual_seed(0)
        model = build_model("ecapa_tdnn", {}).eval()
        save_atomic(model_payload(model), root / "model.pt")
        profile(
            "spkverif extract",
            lambda: extract(root / "model.pt", f"scp:{scp}", f"ark:{root / 'ours.ark'}", device="cpu"),
            args.top,
            audio_seconds,
        )
        try:
            classifier, _ = speechbrain_classifier(False)
        except ImportError as error:
            print(f"\nSpeechBrain not installed ({error}); its profile is left out")
        else:
            profile(
                "SpeechBrain EncoderClassifier loop",
                lambda: speechbrain_loop(scp, root / "sb.ark", classifier),
                args.top,
                audio_seconds,
            )
    same, new = new_length_cost(model)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 96_000) * 0.1)
    flops = counter.get_total_flops()
    print(f"ecapa_tdnn forward on 6 s: {flops / 1e9:.2f} GFLOP, {flops / same / 1e9:.0f} GFLOP/s")
    print(
        f"ecapa_tdnn forward on 6 s: {1000 * same:.1f} ms on a length seen before, {1000 * new:.1f} ms on a new "
        f"length (+{1000 * (new - same):.1f} ms)"
    )
    variants(model, args.threads)


if __name__ == "__main__":
    main()
