"""Figure 1: one training step, spkverif's networks beside SpeechBrain's of the same size.

Both sides take the same batch of raw waveforms (B, T) and compute their own
features inside the step (ours: `KaldiFbank` in the model; SpeechBrain's:
`Fbank` + sentence-level `InputNormalization`, as its VoxCeleb recipe), then the
network, then the same additive-angular-margin head (spkverif's `aam`, m = 0.2,
s = 30) over the same number of classes, backward and an SGD step. Samples/s is
the batch size over the median step time; peak memory is the resident memory
the step adds above the process at rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.common import PeakMemory, Row, Section, interleaved
from spkverif.losses import build_loss
from spkverif.models import build_model, count_parameters


@dataclass
class TrainSize:
    batch: int = 64
    seconds: float = 2.0
    classes: int = 1000
    rounds: int = 5
    models: tuple[str, ...] = ("xvector", "ecapa_tdnn", "resnet34")
    # Options shrinking our networks and SpeechBrain's alike (the smoke test's tiny size); empty at full size.
    tiny: bool = False


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
        for key, step in contestants.items():
            with PeakMemory() as peak:
                step()
            memory[key] = peak.bytes / 2**20
        label = name + (" c512" if name == "ecapa_tdnn" else "")
        peer_name = f"SpeechBrain {type(peer.network).__name__}" if peer_parameters is not None else ""
        section.rows.append(
            Row(
                f"{label} samples/s",
                "samples/s",
                size.batch / seconds["ours"],
                peer_name,
                size.batch / seconds["speechbrain"] if peer_parameters is not None else None,
                higher_is_better=True,
            )
        )
        section.rows.append(
            Row(
                f"{label} peak step memory",
                "MiB",
                max(memory["ours"], 1e-3),
                peer_name,
                max(memory["speechbrain"], 1e-3) if peer_parameters is not None else None,
            )
        )
        section.lines.append(
            f"{label}: {count_parameters(ours) / 1e6:.2f}M parameters (spkverif)"
            + (f", {peer_parameters / 1e6:.2f}M ({peer_name})" if peer_parameters is not None else "")
        )
        print(f"training {label}: {section.rows[-2]}", flush=True)
    return section
