"""Figure 1: one training step, spkverif's networks beside SpeechBrain's, WeSpeaker's, 3D-Speaker's and IDRnD's.

Every contestant takes the same batch of fbank features (B, 200, 80): the
Kaldi fbank of a random 2.015 s waveform batch (spkverif's `KaldiFbank`,
each utterance's mean removed), computed once before the timing, since every
peer's network takes features (WeSpeaker and 3D-Speaker compute them in their
data loaders, SpeechBrain in its recipe's `compute_features`). Each network
embeds them (ours: the model's `encoder`; theirs: the network module their
recipes train, IDRnD's ReDimNet with its mel front end replaced by a transpose),
then the same additive-angular-margin head (spkverif's `aam`, m = 0.2, s = 30)
over the same number of classes, backward and an SGD step.
The networks are each peer's at its VoxCeleb recipe's size (bench/peers.py).

The eager networks are built once and take one untimed step at the first
batch size, under `FlopCounterMode`, which counts the operations (a later
batch size reuses them warm: its first timed step also builds oneDNN's kernels
for the new shape, on every side alike); then the timed steps in turn, batch
size by batch size. spkverif compiled (`encoder.compile()`, as
`training.compile: true` trains) is built and compiled in an untimed step at
the recipes' CPU batch (64). Rows: spkverif eager and compiled, each beside
each peer eager. A third row times ours as `spkverif train` runs it: at each
network's largest batch, in a fresh process where glibc keeps freed memory
(`spkverif.base.memory`), beside the peers' eager figures (their training
scripts leave glibc's defaults). Samples/s is the batch size over the median step
time; peak memory is the resident memory two steps add to a fresh process that
has built the model (its peak resident size, VmHWM), measured after the timed rounds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.common import Row, Section, interleaved
from bench.flops import counted_flops
from bench.peers import PEER_NETWORKS, TINY_OURS, peer_problem, registered
from spkverif.losses import build_loss
from spkverif.models import build_model, count_parameters

ROOT = Path(__file__).resolve().parents[1]
SPEECHBRAIN_NETWORKS = ("xvector", "ecapa_tdnn c512", "resnet34")
AS_TRAIN_RUNS = "ours as train runs it"
MODE_SUFFIX = {"ours compiled": ", compiled", AS_TRAIN_RUNS: ", as `train` runs it (freed memory kept)"}
TINY_XVECTOR = {"channels": 32, "stats_channels": 64, "embedding_dim": 32}


@dataclass
class TrainSize:
    batches: tuple[int, ...] = (16, 64)
    frames: int = 200
    classes: int = 1000
    rounds: int = 1  # timed steps a contestant and batch size
    compiled_batches: tuple[int, ...] = (64,)  # where spkverif compiled runs (the recipes' CPU batch)
    # The networks spkverif compiled runs for: not ERes2NetV2's and ReDimNet's, whose first compile
    # (inductor's code for forward and backward) takes minutes on 2 cores, more than bench/run.sh has.
    compiled_networks: tuple[str, ...] = ("xvector", "ecapa_tdnn c512", "resnet34", "campplus")
    # ECAPA-TDNN c1024 (its peer: WeSpeaker's ECAPA_TDNN_GLOB_c1024) is left out of bench/run.sh for time:
    # `networks=("ecapa_tdnn c1024",)` runs it.
    networks: tuple[str, ...] = ("xvector", "ecapa_tdnn c512", "resnet34", "campplus", "eres2netv2", "redimnet")
    # The largest batch a network trains at here (the limit itself where it is below every size): ERes2NetV2's
    # step at 64 holds more than this machine's 23 GiB.
    batch_limits: dict[str, int] = field(default_factory=lambda: {"eres2netv2": 16})
    # Options shrinking our networks and the peers' alike (the smoke test's tiny size); False at full size.
    tiny: bool = False
    # The networks whose peak memory is measured, ours and SpeechBrain's (a fresh process each); None: none.
    memory_networks: tuple[str, ...] | None = ("xvector",)
    # Timed steps of ours as `spkverif train` runs it (a fresh process keeping freed memory), at the largest batch;
    # 0: no such row (one timed step of CAM++ there read 12.15 samples/s in a run, three 16.1-16.2).
    as_train_runs_rounds: int = 3


def speechbrain_model(name: str, tiny: bool) -> torch.nn.Module:
    """SpeechBrain's network matching our `name` at the same width and depth: features (B, T, 80) in."""
    if name == "xvector":
        from speechbrain.lobes.models.Xvector import Xvector

        channels = [32] * 4 + [64] if tiny else [512] * 4 + [1500]
        return Xvector(in_channels=80, tdnn_channels=channels, lin_neurons=32 if tiny else 512)
    if name == "ecapa_tdnn c512":
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        channels = [32] * 4 + [48] if tiny else [512] * 4 + [1536]
        return ECAPA_TDNN(
            80,
            channels=channels,
            lin_neurons=32 if tiny else 192,
            attention_channels=8 if tiny else 128,
            se_channels=8 if tiny else 128,
        )
    from speechbrain.lobes.models.ResNet import ResNet

    base = 4 if tiny else 32
    return ResNet(
        input_size=80,
        channels=[base, 2 * base, 4 * base, 8 * base],
        block_sizes=[1, 1, 1, 1] if tiny else [3, 4, 6, 3],
        lin_neurons=32 if tiny else 256,
    )


@dataclass(frozen=True)
class Pair:
    """A network of ours (registry name, options, fbank bins) and its peers' builders by display name."""

    label: str
    ours: str
    options: dict
    feat_dim: int
    peers: dict[str, Callable[[bool], torch.nn.Module]]
    problems: tuple[str, ...]  # why a peer (or our network) is left out

    def build_ours(self, tiny: bool) -> torch.nn.Module:
        options = (TINY_XVECTOR if self.ours == "xvector" else TINY_OURS[self.ours]) if tiny else self.options
        return build_model(self.ours, options, {"name": "kaldi_fbank", "options": {"num_mel_bins": self.feat_dim}})


def pairs(size: TrainSize) -> list[Pair]:
    """Each network of `size.networks` with every peer that has it (bench/peers.py and SpeechBrain)."""
    try:
        import speechbrain  # noqa: F401
    except ImportError as error:
        speechbrain_problem = f"SpeechBrain not installed ({error}); its rows are left out"
    else:
        speechbrain_problem = None
    found = []
    for label in size.networks:
        matches = [network for network in PEER_NETWORKS if network.label == label]
        ours, options, feat_dim = (
            (matches[0].ours, matches[0].options, matches[0].feat_dim) if matches else (label, {}, 80)
        )
        problems = []
        peers: dict[str, Callable[[bool], torch.nn.Module]] = {}
        if label in SPEECHBRAIN_NETWORKS:
            if speechbrain_problem:
                problems.append(speechbrain_problem)
            else:
                network_class = {"xvector": "Xvector", "resnet34": "ResNet"}.get(label, "ECAPA_TDNN")
                peers[f"SpeechBrain {network_class}"] = lambda tiny, label=label: speechbrain_model(label, tiny)
        for network in matches:
            problem = peer_problem(network.toolkit)
            if problem:
                problems.append(f"{network.peer_name} left out: {problem}")
            else:
                peers[network.peer_name] = network.build_peer
        missing = registered(matches[0]) if matches else None
        untiny = size.tiny and (ours not in (*TINY_OURS, "xvector") or any(m.tiny_args is None for m in matches))
        if missing or untiny:
            problems = [missing or f"{label} has no tiny size; left out of the tiny run"]
            peers = {}
            ours = ""
        found.append(Pair(label, ours, options, feat_dim, peers, tuple(problems)))
    return found


def fbank_batch(batch: int, frames: int, feat_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (batch, frames, feat_dim) of a random waveform batch, each utterance's mean removed, and labels."""
    from spkverif.frontends.fbank import KaldiFbank

    generator = torch.Generator().manual_seed(seed)
    samples = 400 + 160 * (frames - 1)  # 25 ms windows every 10 ms
    waveforms = (torch.rand(batch, samples, generator=generator) - 0.5) * 0.6
    with torch.no_grad():
        features = KaldiFbank(16000, num_mel_bins=feat_dim).eval()(waveforms)
    features = features - features.mean(dim=1, keepdim=True)
    return features.contiguous(), torch.randint(0, 1000, (batch,), generator=generator)


def training_step(
    network: torch.nn.Module, dim: int, features: torch.Tensor, labels: torch.Tensor, classes: int
) -> Callable[[], None]:
    """A closure doing one SGD step of `network` + an AAM head on fixed features (the peers' tuples: last item)."""
    head = build_loss("aam", dim, classes, {"margin": 0.2, "scale": 30.0})
    optimiser = torch.optim.SGD([*network.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    network.train()
    labels = labels % classes

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        output = network(features)
        output = output[-1] if isinstance(output, tuple) else output
        loss = head(output.reshape(len(features), -1), labels).loss
        loss.backward()
        optimiser.step()

    return step


def build_network(pair: Pair, side: str, tiny: bool) -> tuple[torch.nn.Module, int]:
    """The network a contestant trains ("ours", "ours compiled" or a peer's name) and its embedding size."""
    torch.manual_seed(0)
    model = pair.build_ours(tiny)
    if side == "ours":
        return model.encoder, model.embedding_dim
    if side == "ours compiled":
        from spkverif.training.build import skip_vector_isa_probe

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        skip_vector_isa_probe()
        model.encoder.compile()  # as training.compile does: in place, inductor's defaults
        return model.encoder, model.embedding_dim
    return pair.peers[side](tiny), model.embedding_dim


def peak_step_memory(label: str, side: str, size: TrainSize, batch: int) -> float:
    """MiB of resident memory two training steps add to a fresh process that has built the network.

    A process of its own, so neither the other contestant's allocations nor
    the allocator's reuse of freed memory between rounds hides a step's peak;
    the peak is the process's VmHWM, reset after the network is built (not
    ru_maxrss, which a child inherits from the parent across fork and exec).
    """
    return _in_fresh_process("memory", label, side, size, batch)


def step_seconds_as_train_runs(label: str, size: TrainSize, batch: int) -> float:
    """Median seconds of our eager step in a fresh process that keeps freed memory, as `spkverif train`
    does (`spkverif.base.memory.keep_freed_memory`): one untimed step, then `size.as_train_runs_rounds` timed ones."""
    return _in_fresh_process("seconds", label, "ours", size, batch)


def _in_fresh_process(measure: str, label: str, side: str, size: TrainSize, batch: int) -> float:
    arguments = {"label": label, "side": side, "batch": batch, "threads": torch.get_num_threads(), **asdict(size)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.peer_train", measure, json.dumps(arguments)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    return float(result.stdout.strip().splitlines()[-1])


def _measure(measure: str, arguments: dict) -> None:
    label, side, batch = arguments.pop("label"), arguments.pop("side"), arguments.pop("batch")
    torch.set_num_threads(arguments.pop("threads"))
    if measure == "seconds":
        from spkverif.base.memory import keep_freed_memory

        keep_freed_memory()
    size = TrainSize(**{key: tuple(value) if isinstance(value, list) else value for key, value in arguments.items()})
    pair = next(pair for pair in pairs(size) if pair.label == label)
    network, dim = build_network(pair, side, size.tiny)
    features, labels = fbank_batch(batch, size.frames, pair.feat_dim, 0)
    step = training_step(network, dim, features, labels, size.classes)
    if measure == "seconds":
        print(interleaved({side: step}, size.as_train_runs_rounds, warmup=1)[side])
        return
    before = _status_kib("VmRSS")
    _reset_peak()
    step()
    step()
    print(max((_status_kib("VmHWM") - before) / 1024, 1e-3))


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB: VmRSS (resident now) or VmHWM (the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Set VmHWM back to the resident size now (Linux >= 4.0), so it holds the steps' peak alone."""
    Path("/proc/self/clear_refs").write_text("5")


def _time_pair(pair: Pair, sides: list[str], size: TrainSize, lines: list[str]) -> dict[int, tuple[dict, dict]]:
    """Per batch size: median seconds a step and counted FLOPs a sample of each contestant.

    The eager networks are built once; their untimed step (which counts the operations) is
    at the first batch size only, the next batch sizes reuse the warm networks. A compiled
    contestant is built and compiled (its untimed step) at each of `size.compiled_batches`.
    """
    networks = {side: build_network(pair, side, size.tiny) for side in sides}
    flops: dict[str, float] = {}
    timings = {}
    limit = size.batch_limits.get(pair.label, max(size.batches))
    for index, batch in enumerate([b for b in size.batches if b <= limit] or [limit]):
        features, labels = fbank_batch(batch, size.frames, pair.feat_dim, 0)
        steps = {side: training_step(*networks[side], features, labels, size.classes) for side in sides}
        if index == 0:
            flops = {side: counted_flops(step) / batch for side, step in steps.items()}  # the untimed steps
        if batch in size.compiled_batches and pair.label in size.compiled_networks:
            steps["ours compiled"] = training_step(*build_network(pair, "ours compiled", size.tiny), features, labels,
                                                   size.classes)  # fmt: skip
            started = time.perf_counter()
            steps["ours compiled"]()  # the untimed step compiles
            lines.append(f"{pair.label} batch {batch}: compiling took {time.perf_counter() - started:.0f} s")
        timings[batch] = (
            interleaved(steps, size.rounds, warmup=0),
            {**flops, "ours compiled": flops["ours"], AS_TRAIN_RUNS: flops["ours"]},
        )
    return timings


def run(size: TrainSize) -> Section:
    section = Section("training step")
    section.lines.append(
        f"batch {' and '.join(map(str, size.batches))} × fbank features ({size.frames} frames × 80 bins; 72 for "
        f"ReDimNet) of random {(400 + 160 * (size.frames - 1)) / 16000:g} s waveforms, the same for every "
        f"contestant; AAM head over {size.classes:,} classes, "
        f"SGD, {torch.get_num_threads()} threads, eager on every side, plus spkverif compiled at batch "
        f"{' and '.join(map(str, size.compiled_batches)) or '(none)'} ({', '.join(size.compiled_networks)}); "
        f"median of {size.rounds} interleaved timed "
        f"steps a batch size; one untimed step a network (counting, or compiling) at the first batch size"
    )
    if size.as_train_runs_rounds:
        section.lines.append(
            "as `train` runs it: our eager step at each network's largest batch in a fresh process where glibc "
            "keeps freed memory for reuse, as `spkverif train` sets it (spkverif/base/memory.py), one untimed step "
            f"then the median of {size.as_train_runs_rounds} timed steps; beside the peers' eager figures of the "
            "same batch above, measured with glibc's defaults, which their training scripts leave as they are"
        )
    for pair in pairs(size):
        for problem in pair.problems:
            section.lines.append(f"{pair.label}: {problem}")
            print(section.lines[-1], flush=True)
        if not pair.ours:
            continue
        timed = _time_pair(pair, ["ours", *pair.peers], size, section.lines)
        if size.as_train_runs_rounds:
            batch = max(timed)
            seconds, _ = timed[batch]
            seconds[AS_TRAIN_RUNS] = step_seconds_as_train_runs(pair.label, size, batch)
        for batch, (seconds, flops) in timed.items():
            rate = {side: batch / value for side, value in seconds.items()}
            for mode in [side for side in rate if side.startswith("ours")]:
                figure = f"{pair.label} batch {batch}{MODE_SUFFIX.get(mode, '')} samples/s"
                for peer in pair.peers or [None]:
                    section.rows.append(
                        Row(
                            figure,
                            "samples/s",
                            rate[mode],
                            peer or "",
                            rate.get(peer),
                            higher_is_better=True,
                            flops=flops[mode],
                            peer_flops=flops.get(peer),
                        )
                    )
            print(
                f"training {pair.label} batch {batch}: " + ", ".join(f"{k} {v:.2f}/s" for k, v in rate.items()),
                flush=True,
            )
        if size.memory_networks and pair.label in size.memory_networks:
            speechbrain = [peer for peer in pair.peers if peer.startswith("SpeechBrain")]
            memory = {
                side: peak_step_memory(pair.label, side, size, size.batches[0]) for side in ["ours", *speechbrain]
            }
            for peer in speechbrain or [None]:
                section.rows.append(
                    Row(
                        f"{pair.label} batch {size.batches[0]} peak step memory",
                        "MiB",
                        memory["ours"],
                        peer or "",
                        memory.get(peer),
                    )
                )
        ours, _ = build_network(pair, "ours", size.tiny)
        section.lines.append(
            f"{pair.label}: {count_parameters(ours) / 1e6:.2f}M parameters (spkverif)"
            + "".join(
                f", {count_parameters(build(size.tiny)) / 1e6:.2f}M ({peer})" for peer, build in pair.peers.items()
            )
        )
    return section


if __name__ == "__main__":
    _measure(sys.argv[1], json.loads(sys.argv[2]))
