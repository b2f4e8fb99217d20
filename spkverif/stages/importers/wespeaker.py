"""WeSpeaker's ResNet (`wespeaker/models/resnet.py`: ResNet18/34, ResNet221/293), SimAM-ResNet
(`samresnet.py`: SimAM_ResNet34_ASP, SimAM_ResNet100_ASP) and ECAPA-TDNN
(`wespeaker/models/ecapa_tdnn.py`, ECAPA_TDNN_[GLOB_]c512/c1024) checkpoints, and CAM++
(`campplus.py`, CAMPPlus: 3D-Speaker's layout and keys, `threed_speaker.campplus_rules`).

Reads WeSpeaker's experiment `config.yaml` (`model`, `model_args`,
`dataset_args.fbank_args`, `dataset_args.resample_rate`) and a checkpoint
(`avg_model.pt`, `model_N.pt`: a state_dict, or one under `state_dict`). The
projection head WeSpeaker trains with (`projection.*`) is dropped; the width
(`m_channels`, `in_planes`, `channels`) is read from the first convolution's weights, the
layout (block kind, blocks per stage, SimAM, global context) from the keys, and a layout
other than the configuration's model is one line naming both. Builds our `resnet34`,
`resnet100`, `resnet221`, `resnet293` or `ecapa_tdnn` with WeSpeaker's front end
(`wespeaker_fbank`: Kaldi fbank with a Hamming window, mean normalisation) and its
formulas: TSTP's unbiased standard deviation; ASP's raw moments (SimAM-ResNet); ECAPA's
Res2Net group order and ASTP statistics from raw moments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spkverif.base.errors import SpkverifError
from spkverif.stages.importers import IMPORTERS
from spkverif.stages.importers.common import BATCH_NORM_KEYS, read_state_dict, read_yaml, write_model
from spkverif.stages.importers.threed_speaker import campplus_options, campplus_rules

_BN = BATCH_NORM_KEYS


@dataclass(frozen=True)
class ResNetLayout:
    """A WeSpeaker ResNet's layout: block kind, blocks per stage, SimAM blocks with ASP pooling; and
    our registered model that builds it (not part of the comparison)."""

    block: str
    blocks: tuple[int, ...]
    simam: bool = False
    model: str = field(default="resnet34", compare=False)

    def __str__(self) -> str:
        return f"{self.block} blocks {list(self.blocks)}" + (" with SimAM" if self.simam else "")


# WeSpeaker's `model` name -> the layout it builds (resnet.py, samresnet.py).
RESNETS = {
    "ResNet18": ResNetLayout("basic", (2, 2, 2, 2)),
    "ResNet34": ResNetLayout("basic", (3, 4, 6, 3)),
    "ResNet221": ResNetLayout("bottleneck", (6, 16, 48, 3), model="resnet221"),
    "ResNet293": ResNetLayout("bottleneck", (10, 20, 64, 3), model="resnet293"),
    "SimAM_ResNet34_ASP": ResNetLayout("basic", (3, 4, 6, 3), simam=True),
    "SimAM_ResNet100_ASP": ResNetLayout("basic", (6, 16, 24, 3), simam=True, model="resnet100"),
}


def resnet_rules(simam: bool) -> list[tuple[str, str]]:
    """WeSpeaker ResNet key (regex) -> ours: its layerN is our stages.(N-1), its convK/bnK the body's
    layers; SimAM-ResNet's are under `front.`, its shortcut `downsample`, ASP pooling and `bottleneck`."""
    prefix, shortcut = (r"front\.", "downsample") if simam else ("", "shortcut")
    rules = [(rf"{prefix}conv1\.weight", "encoder.stem.0.weight"), (rf"{prefix}bn1\.{_BN}", r"encoder.stem.1.\1")]
    for layer in range(1, 5):
        source, target = rf"{prefix}layer{layer}\.(\d+)", rf"encoder.stages.{layer - 1}.\1"
        for number, index in ((1, 0), (2, 3), (3, 6)):  # body: conv, BN, ReLU, conv, BN[, ReLU, conv, BN]
            rules.append((rf"{source}\.conv{number}\.weight", rf"{target}.body.{index}.weight"))
            rules.append((rf"{source}\.bn{number}\.{_BN}", rf"{target}.body.{index + 1}.\2"))
        rules.append((rf"{source}\.{shortcut}\.([01])\.(.+)", rf"{target}.shortcut.\2.\3"))
    if simam:
        rules.append((r"pooling\.attention\.([023])\.(.+)", r"encoder.pooling.attention.\1.\2"))
        rules.append((r"bottleneck\.(weight|bias)", r"encoder.embedding.\1"))
    else:
        rules.append((r"seg_1\.(weight|bias)", r"encoder.embedding.\1"))
    return rules


def resnet_layout(state: dict[str, torch.Tensor]) -> ResNetLayout | None:
    """The layout a checkpoint's keys show (blocks counted by their first convolution), or None."""
    simam = any(key.startswith("front.layer1.") for key in state)
    prefix = r"front\." if simam else ""
    counts = []
    for layer in range(1, 5):
        found = [re.fullmatch(rf"{prefix}layer{layer}\.(\d+)\.conv1\.weight", key) for key in state]
        counts.append(1 + max((int(match.group(1)) for match in found if match), default=-1))
    if not any(counts):
        return None
    bottleneck = any(re.fullmatch(rf"{prefix}layer\d\.\d+\.conv3\.weight", key) for key in state)
    return ResNetLayout("bottleneck" if bottleneck else "basic", tuple(counts), simam)


# A checkpoint that is none of WeSpeaker's ResNets: (a key pattern, the network it shows), the first
# pattern some key matches naming it in the error.
KNOWN_KEYS = (
    (r"layer1\.conv\.weight", "a WeSpeaker ECAPA-TDNN"),
    (r"(embedding_model\.)?blocks\.0\.conv\.conv\.weight", "a SpeechBrain ECAPA-TDNN"),
    (r"xvector\..+", "a CAM++ (WeSpeaker's or 3D-Speaker's)"),
    (r"layer1\.0\.convs\.0\.weight", "an ERes2Net or Res2Net"),
    (r"encoder\.(stem|blocks|stages)\..+", "a spkverif model's weights"),
)


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """What a checkpoint holds, for an error message: a WeSpeaker ResNet's layout (and its name), another
    network its keys show, or its first keys."""
    layout = resnet_layout(state)
    if layout is not None:
        names = [name for name, known in RESNETS.items() if known == layout]
        return f"a WeSpeaker {names[0] if names else 'ResNet'} ({layout})"
    for pattern, network in KNOWN_KEYS:
        if any(re.fullmatch(pattern, key) for key in state):
            return network
    return "keys " + ", ".join(repr(key) for key in list(state)[:3])


def _fbank_options(config: dict[str, Any], path: Path, feat_dim: int) -> tuple[int, int]:
    dataset = config.get("dataset_args") or {}
    fbank = dataset.get("fbank_args") or {}
    for key, expected in (("frame_length", 25), ("frame_shift", 10)):
        if fbank.get(key, expected) != expected:
            raise SpkverifError(f"dataset_args.fbank_args.{key}: {fbank[key]} is not supported (only {expected})", path)
    mels = int(fbank.get("num_mel_bins", feat_dim))
    if mels != feat_dim:
        raise SpkverifError(f"fbank_args.num_mel_bins {mels} is not model_args.feat_dim {feat_dim}", path)
    return mels, int(dataset.get("resample_rate", 16000))


def _checked(
    config: dict[str, Any], state: dict[str, torch.Tensor], path: Path, pooling: str, flag: str, keys: tuple[str, ...],
    feat_key: str = "feat_dim",
) -> tuple[dict[str, Any], int, int]:  # fmt: skip
    """model_args (with the pooling and without `flag` we support), mel bins (`model_args[feat_key]`) and
    rate; the keys we read widths from."""
    args = config.get("model_args") or {}
    if args.get("pooling_func", pooling) != pooling:
        raise SpkverifError(
            f"model_args.pooling_func: {args['pooling_func']!r} is not supported (only {pooling})", path
        )
    if args.get(flag, False):
        raise SpkverifError(f"model_args.{flag}: True is not supported", path)
    for key in keys:
        if key not in state:
            raise SpkverifError(
                f"missing key {key!r}: the checkpoint holds {describe_checkpoint(state)}, "
                f"not the WeSpeaker {config.get('model')} the configuration names", path
            )  # fmt: skip
    mels, rate = _fbank_options(config, path, int(args.get(feat_key, 80)))
    return args, mels, rate


def resnet_options(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Our ResNet options for a WeSpeaker ResNet or SimAM-ResNet configuration; one-line errors for what
    does not fit, a checkpoint of another layout among them.

    Returns `build_model`'s arguments (options, front end, sample rate)."""
    name = str(config.get("model"))
    layout = RESNETS[name]
    if resnet_layout(state) != layout:
        raise SpkverifError(
            f"the checkpoint holds {describe_checkpoint(state)}; the configuration's {name} has {layout}", path
        )
    prefix = "front." if layout.simam else ""
    if layout.simam:  # SimAM_ResNet*_ASP(in_planes, embed_dim, acoustic_dim, dropout): ASP, no pooling_func
        args, mels, rate = _checked(config, state, path, "ASP", "two_emb_layer", (), feat_key="acoustic_dim")
        pooling = {"pooling": "attentive", "attention_bottleneck": int(state["pooling.attention.0.weight"].shape[0])}
    else:
        args, mels, rate = _checked(config, state, path, "TSTP", "two_emb_layer", ())
        pooling = {"unbiased_std": True}
    options = {
        "base_channels": int(state[f"{prefix}conv1.weight"].shape[0]),
        "embedding_dim": int(args.get("embed_dim", 256 if layout.simam else 128)),
        "blocks": list(layout.blocks),
        "simam": layout.simam,
        **pooling,
    }
    return _arguments(options, mels, rate)


def ecapa_rules() -> list[tuple[str, str]]:
    """WeSpeaker ECAPA key (regex) -> ours: its layer1 is our stem, layer2-4 our blocks 0-2."""
    rules = [(r"layer1\.conv\.(weight|bias)", r"encoder.stem.0.\1"), (rf"layer1\.bn\.{_BN}", r"encoder.stem.2.\1")]
    for layer in (2, 3, 4):
        body, block = f"encoder.blocks.{layer - 2}.body", rf"layer{layer}\.se_res2block"
        rules += [
            (rf"{block}\.([02])\.conv\.(weight|bias)", rf"{body}.\1.0.\2"),
            (rf"{block}\.([02])\.bn\.{_BN}", rf"{body}.\1.2.\2"),
            (rf"{block}\.1\.convs\.(\d+)\.(weight|bias)", rf"{body}.1.convolutions.\1.0.\2"),
            (rf"{block}\.1\.bns\.(\d+)\.{_BN}", rf"{body}.1.convolutions.\1.2.\2"),
            (rf"{block}\.3\.linear1\.(weight|bias)", rf"{body}.3.gate.0.\1"),
            (rf"{block}\.3\.linear2\.(weight|bias)", rf"{body}.3.gate.2.\1"),
        ]
    rules += [
        (r"conv\.(weight|bias)", r"encoder.aggregate.0.\1"),
        (r"pool\.linear1\.(weight|bias)", r"encoder.pooling.attention.0.\1"),
        (r"pool\.linear2\.(weight|bias)", r"encoder.pooling.attention.2.\1"),
        (rf"bn\.{_BN}", r"encoder.pooling_norm.\1"),
        (r"linear\.(weight|bias)", r"encoder.embedding.\1"),
    ]
    return rules


def ecapa_options(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Our `ecapa_tdnn` options for a WeSpeaker ECAPA-TDNN configuration; one-line errors for what does not fit.

    Returns `build_model`'s arguments (options, front end, sample rate)."""
    name = str(config.get("model"))
    keys = ("layer1.conv.weight", "conv.weight", "pool.linear1.weight")
    args, mels, rate = _checked(config, state, path, "ASTP", "emb_bn", keys)
    glob = state["pool.linear1.weight"].shape[1] == 3 * state["conv.weight"].shape[0]
    if glob != ("GLOB" in name):
        found = "with" if glob else "without"
        raise SpkverifError(f"the checkpoint holds a WeSpeaker ECAPA-TDNN {found} global context; "
                            f"the configuration's {name} is {'without' if glob else 'with'} it", path)  # fmt: skip
    options = {
        "channels": int(state["layer1.conv.weight"].shape[0]),
        "aggregate_channels": int(state["conv.weight"].shape[0]),
        "attention_bottleneck": int(state["pool.linear1.weight"].shape[0]),
        "embedding_dim": int(args.get("embed_dim", 192)),
        "global_context": state["pool.linear1.weight"].shape[1] == 3 * state["conv.weight"].shape[0],
        "res2_passthrough": "last",
        "pooling_moments": "raw",
        "pooling_eps": 1e-7,
    }
    return _arguments(options, mels, rate)


def _arguments(options: dict[str, Any], mels: int, rate: int) -> dict[str, Any]:
    """`build_model`'s arguments: the model's options on WeSpeaker's fbank of `mels` bins at `rate` Hz."""
    return {
        "options": options,
        "frontend": {"name": "wespeaker_fbank", "options": {"num_mel_bins": mels}},
        "sample_rate": rate,
    }


def _resnet(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
    layout = RESNETS[str(config.get("model"))]
    return layout.model, resnet_options(config, state, path), resnet_rules(layout.simam)


def _ecapa(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
    return "ecapa_tdnn", ecapa_options(config, state, path), ecapa_rules()


def _campplus(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
    """WeSpeaker's CAMPPlus (`campplus.py`): 3D-Speaker's CAM++ and its keys, TSTP's sqrt(var + 1e-7)."""
    args, mels, rate = _checked(config, state, path, "TSTP", "two_emb_layer", ("head.conv1.weight",))
    options = campplus_options(args, state, "embed_dim", "model_args", path)
    return "campplus", _arguments(options, mels, rate), campplus_rules()


ARCHITECTURES = {
    **{name: _resnet for name in RESNETS},
    **{f"ECAPA_TDNN{glob}_c{width}": _ecapa for glob in ("", "_GLOB") for width in (512, 1024)},
    "CAMPPlus": _campplus,
}


@IMPORTERS.register("wespeaker")
def import_wespeaker(checkpoint: Path, config_path: Path, out: Path) -> dict[str, Any]:
    """WeSpeaker ResNet18/34/221/293, SimAM-ResNet34/100, ECAPA-TDNN or CAM++: `avg_model.pt` and the
    experiment's `config.yaml` -> our model file."""
    config = read_yaml(config_path)
    architecture = ARCHITECTURES.get(str(config.get("model")))
    if architecture is None:
        raise SpkverifError(
            f"model: {config.get('model')!r} is not one we import; choose one of: {', '.join(ARCHITECTURES)}",
            config_path,
        )
    state = read_state_dict(checkpoint, nested=("state_dict",))
    state = {key: value for key, value in state.items() if not key.startswith("projection.")}
    name, options, rules = architecture(config, state, config_path)
    origin = {"toolkit": "wespeaker", "checkpoint": str(checkpoint), "config": str(config_path)}
    return write_model(name, options, state, rules, checkpoint, out, origin)
