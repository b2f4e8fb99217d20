"""Figure 1: one training step, spkverif's networks beside SpeechBrain's of the same size.

Both sides take the same batch of raw waveforms (B, T) and compute their own
features inside the step (ours: `KaldiFbank` in the model; SpeechBrain's:
`Fbank` + sentence-level `InputNormalization`, as its VoxCeleb recipe), then the
network, then the same additive-angular-margin head (spkverif's `aam`, m = 0.2,
s = 30) over the same number of classes, backward and an SGD step. Samples/s is
the batch size over the median step time; peak memory is the resident memory
two steps add to a fresh process that has built the model (its
peak resident size, VmHWM), measured after the timed rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.common import Row, Section, interleaved
from spkverif.losses import build_loss
from spkverif.models import build_model, count_parameters

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TrainSize:
    batch: int = 16
    seconds: float = 2.0
    classes: int = 1000
    rounds: int = 5
    models: tuple[str, ...] = ("xvector", "ecapa_tdnn", "resnet34")
    # Options shrinking our networks and SpeechBrain's alike (the smoke test's tiny size); empty at full size.
    tiny: bool = False
    # The models whose peak memory is measured (a fresh process each); None: all of them.
    memory_models: tuple[str, ...] | None = None


def _our_model(name: str, tiny: bool) -> torch.nn.Module:
    options = (
        {
            "xvector": {"channels": 32, "stats_channels": 64, "embedding_dim": 32},
            "ecapa_tdnn": {
                "channels": 32,
                "embedding_dim": 32,
                "aggregate_channels": 48,
                "attention_bottleneck": 8,
                "se_bottleneck": 8,
            },
            "resnet34": {"base_channels": 4, "blocks": [1, 1, 1, 1], "embedding_dim": 32},
        }[name]
        if tiny
        else {}
    )
    return build_model(name, options)


class SpeechBrainEmbedder(torch.nn.Module):
    """SpeechBrain's recipe front: Fbank (80 bins), sentence mean normalisation, then the network."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        from speechbrain.lobes.features import Fbank
        from speechbrain.processing.features import InputNormalization

        self.features = Fbank(n_mels=80)
        self.normalise = InputNormalization(norm_type="sentence", std_norm=False)
        self.network = network

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        lengths = torch.ones(len(waveforms))
        features = self.normalise(self.features(waveforms), lengths)
        return self.network(features, lengths).squeeze(1)


def speechbrain_model(name: str, tiny: bool) -> tuple[torch.nn.Module, int]:
    """SpeechBrain's network matching our `name` at the same width and depth, and its embedding size."""
    if name == "xvector":
        from speechbrain.lobes.models.Xvector import Xvector

        channels = [32] * 4 + [64] if tiny else [512] * 4 + [1500]
        dim = 32 if tiny else 512
        network = Xvector(in_channels=80, tdnn_channels=channels, lin_neurons=dim)
    elif name == "ecapa_tdnn":
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        channels = [32] * 4 + [48] if tiny else [512] * 4 + [1536]
        dim = 32 if tiny else 192
        network = ECAPA_TDNN(
            80,
            channels=channels,
            lin_neurons=dim,
            attention_channels=8 if tiny else 128,
            se_channels=8 if tiny else 128,
        )
    else:
        from speechbrain.lobes.models.ResNet import ResNet

        base = 4 if tiny else 32
        dim = 32 if tiny else 256
        network = ResNet(
            input_size=80,
            channels=[base, 2 * base, 4 * base, 8 * base],
            block_sizes=[1, 1, 1, 1] if tiny else [3, 4, 6, 3],
            lin_neurons=dim,
        )
    return SpeechBrainEmbedder(network), dim


def training_step(model: torch.nn.Module, dim: int, size: TrainSize, seed: int) -> Callable[[], None]:
    """A closure doing one SGD step of `model` + an AAM head on a fixed random batch."""
    generator = torch.Generator().manual_seed(seed)
    waveforms = (torch.rand(size.batch, round(size.seconds * 16000), generator=generator) - 0.5) * 0.6
    labels = torch.randint(0, size.classes, (size.batch,), generator=generator)
    head = build_loss("aam", dim, size.classes, {"margin": 0.2, "scale": 30.0})
    optimiser = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss = head(model(waveforms), labels).loss
        loss.backward()
        optimiser.step()

    return step


def _build(name: str, side: str, size: TrainSize) -> tuple[torch.nn.Module, int]:
    if side == "ours":
        model = _our_model(name, size.tiny)
        return model, model.embedding_dim
    return speechbrain_model(name, size.tiny)


def peak_step_memory(name: str, side: str, size: TrainSize) -> float:
    """MiB of resident memory two training steps add to a fresh process that has built the model.

    A process of its own, so neither the other contestant's allocations nor
    the allocator's reuse of freed memory between rounds hides a step's peak;
    the peak is the process's VmHWM, reset after the model is built (not
    ru_maxrss, which a child inherits from the parent across fork and exec).
    """
    arguments = {"name": name, "side": side, "threads": torch.get_num_threads(), **asdict(size)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.peer_train", json.dumps(arguments)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    return float(result.stdout.strip().splitlines()[-1])


def _measure_memory(arguments: dict) -> None:
    name, side = arguments.pop("name"), arguments.pop("side")
    torch.set_num_threads(arguments.pop("threads"))
    arguments["models"] = tuple(arguments["models"])
    arguments["memory_models"] = None
    size = TrainSize(**arguments)
    torch.manual_seed(0)
    model, dim = _build(name, side, size)
    step = training_step(model, dim, size, 0)
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


def run(size: TrainSize) -> Section:
    section = Section("training step")
    section.lines.append(
        f"batch {size.batch} × {size.seconds:g} s raw waveforms, AAM head over {size.classes:,} classes, SGD, "
        f"{torch.get_num_threads()} threads, median of {size.rounds} interleaved steps after one warm-up step"
    )
    try:
        import speechbrain  # noqa: F401
    except ImportError as error:
        with_peer = False
        section.lines.append(f"SpeechBrain not installed ({error}); its rows are left out")
        print(section.lines[-1])
    else:
        with_peer = True
    for name in size.models:
        torch.manual_seed(0)
        ours = _our_model(name, size.tiny)
        contestants = {"ours": training_step(ours, ours.embedding_dim, size, 0)}
        peer_parameters = None
        if with_peer:
            peer, peer_dim = speechbrain_model(name, size.tiny)
            peer_parameters = count_parameters(peer)
            contestants["speechbrain"] = training_step(peer, peer_dim, size, 0)
        seconds = interleaved(contestants, size.rounds)
        memory = {}
        if size.memory_models is None or name in size.memory_models:
            memory = {key: peak_step_memory(name, key, size) for key in contestants}
        label = name + (" c512" if name == "ecapa_tdnn" else "")
        peer_name = f"SpeechBrain {type(peer.network).__name__}" if with_peer else ""
        section.rows.append(
            Row(
                f"{label} samples/s",
                "samples/s",
                size.batch / seconds["ours"],
                peer_name,
                size.batch / seconds["speechbrain"] if with_peer else None,
                higher_is_better=True,
            )
        )
        if memory:
            section.rows.append(
                Row(f"{label} peak step memory", "MiB", memory["ours"], peer_name, memory.get("speechbrain"))
            )
        section.lines.append(
            f"{label}: {count_parameters(ours) / 1e6:.2f}M parameters (spkverif)"
            + (f", {peer_parameters / 1e6:.2f}M ({peer_name})" if with_peer else "")
        )
        print(f"training {label}: {[row for row in section.rows if row.figure.startswith(label)]}", flush=True)
    return section


if __name__ == "__main__":
    _measure_memory(json.loads(sys.argv[1]))
