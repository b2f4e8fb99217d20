"""WeSpeaker, 3D-Speaker and IDRnD's ReDimNet beside spkverif: their code found on the path, their networks from it.

None of the three is a package of the bench's environment: bench/run.sh puts a
checkout of each on PYTHONPATH for the bench process alone (WESPEAKER_ROOT,
SPEAKERLAB_ROOT, REDIMNET_ROOT, or an unpacked mirror), and this module imports their modules
from it, never a copy. Where a checkout is absent, `peer_problem` says so and
the rows are left out with that reason.

WeSpeaker's package `__init__` imports its command-line tool, which imports
Silero VAD, UMAP, HDBSCAN and its self-supervised front ends (s3prl, whisper,
transformers, peft) at import time; the networks need none of them, so the
package is registered without running its `__init__` (`wespeaker.models.*`
import as they are). Its command-line extraction (`wespeaker.cli.speaker`)
is imported with those of the five that are missing replaced by empty modules:
the fbank path it takes with voice detection off calls none of them.

`PEER_NETWORKS` pairs each of our networks with the peer's implementation of
the same network, at the size the peer's VoxCeleb recipe trains
(wespeaker/examples/voxceleb/v2/conf/*.yaml, 3D-Speaker/egs/voxceleb/*/conf/*.yaml;
ReDimNet's authors' `ReDimNetWrap` at their B2 configuration, the one WeSpeaker's
`ReDimNetB2` also writes out).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkverif.models import MODELS, build_model

# Options of each of our networks at the smoke test's tiny size; a network not here has no tiny size.
TINY_OURS: dict[str, dict] = {
    "resnet34": {"base_channels": 4, "blocks": [1, 1, 1, 1], "embedding_dim": 32},
    "ecapa_tdnn": {
        "channels": 32,
        "embedding_dim": 32,
        "aggregate_channels": 48,
        "attention_bottleneck": 8,
        "se_bottleneck": 8,
    },
    "campplus": {
        "fcm_channels": 4,
        "tdnn_channels": 16,
        "growth_rate": 4,
        "bottleneck_ratio": 2,
        "block_layers": [1, 1, 1],
        "embedding_dim": 32,
    },
    "eres2netv2": {"base_channels": 4, "blocks": [1, 1, 1, 1], "embedding_dim": 32},
    "redimnet": {"channels": 4, "stages": [[1, 1, 1, 4], [2, 1, 1, 4]], "embedding_dim": 32},
}


@dataclass(frozen=True)
class PeerNetwork:
    """One network in spkverif (`ours`, registry name and options) and in a peer (`module`, `builder`, `args`).

    Both take fbank features (B, frames, feat_dim) and return embeddings (B, dim) (the peer's
    networks return a tuple whose last item is the embedding). `tiny_args` (and `tiny_builder`)
    replace `args` at the smoke test's size (our side then takes `TINY_OURS[ours]`).
    """

    label: str
    ours: str
    options: dict
    toolkit: str  # "WeSpeaker" or "3D-Speaker"
    module: str
    builder: str
    args: dict
    tiny_args: dict | None = None  # None: no tiny size (the pair is left out of the smoke test)
    tiny_builder: str = ""  # the peer's builder at the tiny size, when its named size fixes the width
    feat_dim: int = 80
    # Makes the built peer take fbank features (B, frames, feat_dim) where it computes its own from waveforms.
    on_features: Callable[[torch.nn.Module], torch.nn.Module] | None = None

    @property
    def frontend(self) -> dict:
        """Our front end: Kaldi fbank with the pair's number of mel bins."""
        return {"name": "kaldi_fbank", "options": {"num_mel_bins": self.feat_dim}}

    @property
    def peer_name(self) -> str:
        return f"{self.toolkit} {self.builder}"

    def build_ours(self, tiny: bool) -> torch.nn.Module:
        """Our model (front end and encoder); a benchmark on features calls its `.encoder`."""
        return build_model(self.ours, TINY_OURS[self.ours] if tiny else self.options, self.frontend)

    def build_peer(self, tiny: bool) -> torch.nn.Module:
        """The peer's network from its own module, random weights (ImportError where its checkout is absent)."""
        load_toolkit(self.toolkit)
        module = importlib.import_module(self.module)
        if not tiny:
            network = getattr(module, self.builder)(**self.args)
        else:
            args = dict(self.tiny_args or {})
            if "block" in args:  # a block class of the peer's module, named
                args["block"] = getattr(module, args["block"])
            network = getattr(module, self.tiny_builder or self.builder)(**args)
        return self.on_features(network) if self.on_features else network


class SpectrogramGiven(torch.nn.Module):
    """In place of IDRnD's mel front end (`ReDimNetWrap.spec`, waveforms -> (B, F, T)): fbank (B, T, F) -> (B, F, T)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.transpose(1, 2)


def idrnd_on_features(wrap: torch.nn.Module) -> torch.nn.Module:
    """IDRnD's `ReDimNetWrap` on the bench's fbank: its own front end replaced, everything after it its own code."""
    wrap.spec = SpectrogramGiven()
    return wrap


# ReDimNet B2 in IDRnD's `ReDimNetWrap` arguments, as WeSpeaker's `ReDimNetB2` writes it out (and our
# `spkverif.models.redimnet.SIZES["b2"]`): 72 mel bins, C 16, stages (stride, blocks, expansion, kernels,
# attention reduction).
IDRND_B2 = {
    "F": 72, "C": 16, "block_1d_type": "conv+att", "block_2d_type": "convnext_like",
    "stages_setup": [(1, 2, 1, [(3, 3)], 12), (2, 2, 1, [(3, 3)], 12), (1, 3, 1, [(3, 3)], 12),
                     (2, 4, 1, [(3, 3)], 8), (1, 4, 1, [(3, 3)], 8), (2, 4, 1, [(3, 3)], 4)],
    "group_divisor": 4, "out_channels": None, "embed_dim": 192, "global_context_att": True,
}  # fmt: skip
# The smoke test's tiny ReDimNet, in both peers' arguments (TINY_OURS["redimnet"] in ours).
TINY_REDIMNET = {
    "C": 4, "block_1d_type": "conv+att", "block_2d_type": "convnext_like", "group_divisor": 4, "out_channels": None,
    "stages_setup": [(1, 1, 1, [(3, 3)], 4), (2, 1, 1, [(3, 3)], 4)], "embed_dim": 32, "global_context_att": True,
}  # fmt: skip


PEER_NETWORKS: tuple[PeerNetwork, ...] = (
    PeerNetwork(
        "resnet34",
        "resnet34",
        {},
        "WeSpeaker",
        "wespeaker.models.resnet",
        "ResNet34",
        {"feat_dim": 80, "embed_dim": 256},
        {"block": "BasicBlock", "num_blocks": [1, 1, 1, 1], "m_channels": 4, "feat_dim": 80, "embed_dim": 32},
        "ResNet",
    ),
    PeerNetwork(
        "ecapa_tdnn c512",
        "ecapa_tdnn",
        {},
        "WeSpeaker",
        "wespeaker.models.ecapa_tdnn",
        "ECAPA_TDNN_GLOB_c512",
        {"feat_dim": 80, "embed_dim": 192},
        {"channels": 32, "feat_dim": 80, "embed_dim": 32, "global_context_att": True},
        "ECAPA_TDNN",
    ),
    PeerNetwork(
        "ecapa_tdnn c1024",
        "ecapa_tdnn",
        {"channels": 1024},
        "WeSpeaker",
        "wespeaker.models.ecapa_tdnn",
        "ECAPA_TDNN_GLOB_c1024",
        {"feat_dim": 80, "embed_dim": 192},
    ),
    PeerNetwork(
        "campplus",
        "campplus",
        {"embedding_dim": 512},
        "WeSpeaker",
        "wespeaker.models.campplus",
        "CAMPPlus",
        {"feat_dim": 80, "embed_dim": 512},
        {"feat_dim": 80, "embed_dim": 32, "growth_rate": 4, "bn_size": 2, "init_channels": 16},
    ),
    PeerNetwork(
        "campplus",
        "campplus",
        {"embedding_dim": 512},
        "3D-Speaker",
        "speakerlab.models.campplus.DTDNN",
        "CAMPPlus",
        {"feat_dim": 80, "embedding_size": 512},
        {"feat_dim": 80, "embedding_size": 32, "growth_rate": 4, "bn_size": 2, "init_channels": 16},
    ),
    PeerNetwork(
        "resnet221",
        "resnet221",
        {"unbiased_std": True},
        "WeSpeaker",
        "wespeaker.models.resnet",
        "ResNet221",
        {"feat_dim": 80, "embed_dim": 256},
    ),
    PeerNetwork(
        "resnet293",
        "resnet293",
        {"unbiased_std": True},
        "WeSpeaker",
        "wespeaker.models.resnet",
        "ResNet293",
        {"feat_dim": 80, "embed_dim": 256},
    ),
    PeerNetwork(
        "eres2net",
        "eres2net",
        {},
        "3D-Speaker",
        "speakerlab.models.eres2net.ERes2Net",
        "ERes2Net",
        {"feat_dim": 80, "embedding_size": 192, "m_channels": 32},
    ),
    PeerNetwork(
        "eres2netv2",
        "eres2netv2",
        {},
        "3D-Speaker",
        "speakerlab.models.eres2net.ERes2NetV2",
        "ERes2NetV2",
        {"feat_dim": 80, "embedding_size": 192, "m_channels": 64, "baseWidth": 26, "scale": 2, "expansion": 2},
        {"feat_dim": 80, "embedding_size": 32, "m_channels": 4, "num_blocks": [1, 1, 1, 1]},
    ),
    PeerNetwork(
        "redimnet",
        "redimnet",
        {},
        "WeSpeaker",
        "wespeaker.models.redimnet",
        "ReDimNetB2",
        {"feat_dim": 72, "embed_dim": 192},
        {"feat_dim": 72, **TINY_REDIMNET},
        "ReDimNet",
        feat_dim=72,
    ),
    PeerNetwork(
        "redimnet",
        "redimnet",
        {},
        "IDRnD",
        "redimnet.model",
        "ReDimNetWrap",
        IDRND_B2,
        {"F": 72, **TINY_REDIMNET},
        feat_dim=72,
        on_features=idrnd_on_features,
    ),
)

TOOLKITS = {"WeSpeaker": "wespeaker", "3D-Speaker": "speakerlab", "IDRnD": "redimnet"}
ROOT_VARIABLES = {"WeSpeaker": "WESPEAKER_ROOT", "3D-Speaker": "SPEAKERLAB_ROOT", "IDRnD": "REDIMNET_ROOT"}
# What wespeaker.cli.speaker imports at module level that its fbank extraction never calls.
CLI_ONLY_IMPORTS = ("silero_vad", "umap", "hdbscan")


def load_toolkit(toolkit: str) -> types.ModuleType:
    """The peer's top-level package, from the checkout on sys.path (ImportError naming the variable if absent).

    WeSpeaker's is registered without running its `__init__` (see the module docstring).
    """
    package = TOOLKITS[toolkit]
    if package in sys.modules:
        return sys.modules[package]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{toolkit} is not on PYTHONPATH (bench/run.sh puts it there from ${ROOT_VARIABLES[toolkit]} "
            f"or the fetched mirror)"
        )
    # 3D-Speaker's is a namespace package (importing it runs nothing); IDRnD's __init__ puts its own folder on
    # sys.path and imports its model, nothing else
    if package in ("speakerlab", "redimnet"):
        return importlib.import_module(package)
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    return module


def peer_problem(toolkit: str) -> str | None:
    """Why the toolkit's rows cannot run here (None: they can)."""
    try:
        load_toolkit(toolkit)
    except ImportError as error:
        return str(error)
    return None


def registered(network: PeerNetwork) -> str | None:
    """Why our side of the pair cannot run here (None: our network is registered)."""
    if network.ours in MODELS:
        return None
    return f"spkverif has no `{network.ours}` network registered yet; the {network.label} rows are left out"


def wespeaker_cli() -> types.ModuleType:
    """`wespeaker.cli.speaker`, its command-line tool, with the imports only its other tasks use stubbed where absent.

    Stubbed: `silero_vad`, `umap`, `hdbscan` (voice detection and diarization), and
    `wespeaker.frontend`'s `__init__` (it imports the self-supervised front ends: s3prl,
    whisper, transformers, peft; its `frontend_class_dict` is left empty);
    an `embedding_kaldi` task with `--vad` off on an fbank model calls none of them.
    """
    load_toolkit("WeSpeaker")
    for name in CLI_ONLY_IMPORTS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.load_silero_vad = lambda: None
            stub.read_audio = stub.get_speech_timestamps = None
            sys.modules[name] = stub
    try:
        importlib.import_module("wespeaker.frontend")
    except ImportError:  # the package without its __init__ (which imports every front end); its modules import
        frontend = importlib.util.module_from_spec(importlib.util.find_spec("wespeaker.frontend"))
        frontend.frontend_class_dict = {}
        sys.modules["wespeaker.frontend"] = frontend
    return importlib.import_module("wespeaker.cli.speaker")
