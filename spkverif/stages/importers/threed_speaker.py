"""3D-Speaker's CAM++, ERes2Net and ERes2NetV2 checkpoints (`speakerlab/models/campplus/DTDNN.py`,
`speakerlab/models/eres2net/ERes2Net.py`, `ERes2Net_huge.py`, `ERes2NetV2.py`).

Reads the network's section of a 3D-Speaker recipe configuration (`conf/*.yaml`, or the
`config.yaml` a run copies to its experiment directory): `embedding_model: {obj: CLASS, args:
{...}}`, its `<name>` references resolved against the file's top level, and
`feature_extractor` (FBank's `n_mels`, `sample_rate`, `mean_nor`) where the file has one; a
file holding only an `embedding_model` section (or only `obj` and `args`) stands for the
published models, whose model cards give no recipe. The checkpoint is a plain state_dict
(`campplus_voxceleb.bin`, `pretrained_eres2net.ckpt`, `pretrained_eres2netv2.ckpt`,
`embedding_model.ckpt` of a run). Nothing of either file is executed.

Builds our `campplus` (3D-Speaker's pooled `torch.std`: `unbiased_std: true, pooling_eps: 0`),
`eres2net` or `eres2netv2` on `3dspeaker_fbank`, 3D-Speaker's FBank: Kaldi fbank with the
povey window on the samples in [-1, 1] as torchaudio.load gives them, no dither, each
utterance's mean subtracted. CAM++'s front width (3D-Speaker fixes it at 32) is read from
the weights; every other width comes from the configuration and is checked against the
weights' shapes. A checkpoint of another network or toolkit is one line naming what its keys
show and what the configuration names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spkverif.base.errors import SpkverifError
from spkverif.stages.importers import IMPORTERS
from spkverif.stages.importers.common import BATCH_NORM_KEYS, read_state_dict, read_yaml, write_model

_BN = BATCH_NORM_KEYS
CAMPPLUS = "speakerlab.models.campplus.DTDNN.CAMPPlus"
ERES2NET = "speakerlab.models.eres2net.ERes2Net.ERes2Net"
ERES2NET_HUGE = "speakerlab.models.eres2net.ERes2Net_huge.ERes2Net"
ERES2NETV2 = "speakerlab.models.eres2net.ERes2NetV2.ERes2NetV2"
FBANK = "speakerlab.process.processor.FBank"


def campplus_rules(layers: tuple[int, ...] = (12, 24, 16)) -> list[tuple[str, str]]:
    """3D-Speaker's (and WeSpeaker's) CAM++ key (regex) -> ours.

    Its `head` (FCM) is our `front.layers` [conv, BN, ReLU, 4 residual blocks, conv, BN, ReLU];
    its `xvector` our `frames` [TDNN conv, BN+ReLU, then per block the D-TDNN block and its
    transit, then the closing BN+ReLU]; its `dense` (a 1x1 convolution and BatchNorm without
    affine parameters) our `embedding` (linear, BatchNorm). `layers`: the D-TDNN layers of each block.
    """
    front, frames, blocks = "encoder.front.layers", "encoder.frames", len(layers)
    rules = [
        (r"head\.conv1\.weight", f"{front}.0.weight"),
        (rf"head\.bn1\.{_BN}", rf"{front}.1.\1"),
        (r"head\.conv2\.weight", f"{front}.7.weight"),
        (rf"head\.bn2\.{_BN}", rf"{front}.8.\1"),
        (r"xvector\.tdnn\.linear\.weight", f"{frames}.0.weight"),
        (rf"xvector\.tdnn\.nonlinear\.batchnorm\.{_BN}", rf"{frames}.1.0.\1"),
        (rf"xvector\.out_nonlinear\.batchnorm\.{_BN}", rf"{frames}.{2 * blocks + 2}.0.\1"),
        (r"xvector\.dense\.linear\.weight", "encoder.embedding.0.weight"),
        (rf"xvector\.dense\.nonlinear\.batchnorm\.{_BN}", r"encoder.embedding.1.\1"),
    ]
    for layer, first in ((1, 3), (2, 5)):  # its layerN.i is our front.layers[first + i]
        for index in (0, 1):
            block, ours = rf"head\.layer{layer}\.{index}", f"{front}.{first + index}"
            rules += [
                (rf"{block}\.conv1\.weight", f"{ours}.body.0.weight"),
                (rf"{block}\.bn1\.{_BN}", rf"{ours}.body.1.\1"),
                (rf"{block}\.conv2\.weight", f"{ours}.body.3.weight"),
                (rf"{block}\.bn2\.{_BN}", rf"{ours}.body.4.\1"),
                (rf"{block}\.shortcut\.([01])\.(.+)", rf"{ours}.shortcut.\1.\2"),
            ]
    for number, count in enumerate(layers, start=1):
        block, transit = f"{frames}.{2 * number}", f"{frames}.{2 * number + 1}"
        layer = rf"xvector\.block{number}\.tdnnd(\d+)"
        numbered = [  # its tdnndK is our layers.(K-1): one rule for each K
            (rf"{layer}\.nonlinear1\.batchnorm\.{_BN}", rf"{block}.layers.<N>.body.0.0.\2"),
            (rf"{layer}\.linear1\.weight", rf"{block}.layers.<N>.body.1.weight"),
            (rf"{layer}\.nonlinear2\.batchnorm\.{_BN}", rf"{block}.layers.<N>.body.2.0.\2"),
            (rf"{layer}\.cam_layer\.linear_local\.weight", rf"{block}.layers.<N>.body.3.local.weight"),
            (rf"{layer}\.cam_layer\.linear1\.(weight|bias)", rf"{block}.layers.<N>.body.3.mask.0.\2"),
            (rf"{layer}\.cam_layer\.linear2\.(weight|bias)", rf"{block}.layers.<N>.body.3.mask.2.\2"),
        ]
        rules += [
            (pattern.replace(r"(\d+)", str(index), 1), replacement.replace("<N>", str(index - 1)).replace(r"\2", r"\1"))
            for index in range(1, count + 1)
            for pattern, replacement in numbered
        ]
        rules += [
            (rf"xvector\.transit{number}\.nonlinear\.batchnorm\.{_BN}", rf"{transit}.0.0.\1"),
            (rf"xvector\.transit{number}\.linear\.weight", f"{transit}.1.weight"),
        ]
    return rules


def eres2net_rules(global_fusions: int) -> list[tuple[str, str]]:
    """3D-Speaker's ERes2Net (`global_fusions` 3) or ERes2NetV2 (1) key (regex) -> ours: its layerN is our
    stages.(N-1), a block's conv1/bn1 our `reduce`, convs/bns our `groups`, fuse_models our `joins`,
    conv3/bn3 our `expand`; its downsampling convolutions and fusions ours in order."""
    rules = [
        (r"conv1\.weight", "encoder.stem.0.weight"),
        (rf"bn1\.{_BN}", r"encoder.stem.1.\1"),
        (r"seg_1\.(weight|bias)", r"encoder.embedding.\1"),
    ]
    for layer in range(1, 5):
        block, ours = rf"layer{layer}\.(\d+)", rf"encoder.stages.{layer - 1}.\1"
        rules += [
            (rf"{block}\.conv1\.weight", f"{ours}.reduce.0.weight"),
            (rf"{block}\.bn1\.{_BN}", rf"{ours}.reduce.1.\2"),
            (rf"{block}\.convs\.(\d+)\.weight", rf"{ours}.groups.\2.0.weight"),
            (rf"{block}\.bns\.(\d+)\.{_BN}", rf"{ours}.groups.\2.1.\3"),
            (rf"{block}\.fuse_models\.(\d+)\.local_att\.(\d)\.(.+)", rf"{ours}.joins.\2.attention.\3.\4"),
            (rf"{block}\.conv3\.weight", f"{ours}.expand.0.weight"),
            (rf"{block}\.bn3\.{_BN}", rf"{ours}.expand.1.\2"),
            (rf"{block}\.shortcut\.([01])\.(.+)", rf"{ours}.shortcut.\2.\3"),
        ]
    if global_fusions == 3:
        names = (("layer1_downsample", "fuse_mode12"), ("layer2_downsample", "fuse_mode123"),
                 ("layer3_downsample", "fuse_mode1234"))  # fmt: skip
    else:
        names = (("layer3_ds", "fuse34"),)
    for index, (downsample, fusion) in enumerate(names):
        rules += [
            (rf"{downsample}\.weight", f"encoder.downsample.{index}.weight"),
            (rf"{fusion}\.local_att\.(\d)\.(.+)", rf"encoder.fusions.{index}.attention.\1.\2"),
        ]
    return rules


# What a checkpoint's keys show: (a key pattern, the network), the first pattern some key matches naming it.
KNOWN_KEYS = (
    (r"projection\..+", "a WeSpeaker checkpoint (it holds WeSpeaker's training head, projection.*)"),
    (r"(fuse34|layer3_ds)\..+", "ERes2NetV2"),
    (r"(fuse_mode12|layer1_downsample)\..+", "ERes2Net"),
    (r"(head|xvector)\..+", "CAM++"),
    (r"layer\d\.\d+\.convs\.\d+\.weight", "a Res2Net (no global feature fusion)"),
    (r"layer\d\.\d+\.conv2\.weight", "a ResNet"),
    (r"(embedding_model\.)?blocks\.0\.conv\.conv\.weight", "an ECAPA-TDNN in SpeechBrain's layout"),
    (r"layer1\.conv\.weight", "a WeSpeaker ECAPA-TDNN"),
    (r"encoder\.(front|frames|stem|stages|blocks)\..+", "a spkverif model's weights"),
)


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str | None:
    """The network a checkpoint's keys show, or None when no pattern of `KNOWN_KEYS` matches."""
    for pattern, network in KNOWN_KEYS:
        if any(re.fullmatch(pattern, key) for key in state):
            return network
    return None


def _resolve(value: Any, root: dict[str, Any], path: Path, seen: tuple[str, ...] = ()) -> Any:
    """3D-Speaker's references: a string `<name>` is the top-level `name`'s value (its builder's rule)."""
    if isinstance(value, dict):
        return {key: _resolve(item, root, path, seen) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, root, path, seen) for item in value]
    match = re.fullmatch(r"<([A-Za-z]\w*)>", value) if isinstance(value, str) else None
    if match is None:
        return value
    name = match.group(1)
    if name not in root or name in seen:
        raise SpkverifError(f"cannot resolve {value!r}: {'a reference cycle' if name in seen else 'no such key'}",
                            path)  # fmt: skip
    return _resolve(root[name], root, path, (*seen, name))


def _section(config: dict[str, Any], key: str, path: Path) -> dict[str, Any] | None:
    """`config[key]` as {obj, args}, references resolved; None if the file has no such section."""
    section = config.get(key)
    if section is None:
        return None
    if isinstance(section, dict) and "__tag__" in section:
        raise SpkverifError(f"a SpeechBrain hyperparams.yaml ({key}: !{section['__tag__']}), not a 3D-Speaker "
                            "configuration (its sections have obj: and args:)", path)  # fmt: skip
    if not isinstance(section, dict) or not isinstance(section.get("obj"), str):
        found = f"keys {', '.join(map(str, section))}" if isinstance(section, dict) else repr(section)[:60]
        raise SpkverifError(f"{key}: expected a mapping with obj: (a class) and args:, found {found}", path)
    args = _resolve(section.get("args") or {}, config, path)
    if not isinstance(args, dict):
        raise SpkverifError(f"{key}.args: expected a mapping, found {args!r}", path)
    return {"obj": section["obj"], "args": args}


def _check_args(args: dict[str, Any], known: dict[str, Any], fixed: dict[str, Any], obj: str, path: Path) -> None:
    """Every argument one of `known`'s (our defaults) or `fixed`'s (the only value we build)."""
    for key, value in args.items():
        if key not in known and key not in fixed:
            raise SpkverifError(f"embedding_model.args.{key}: not an argument of {obj} we import", path)
        if key in fixed and value != fixed[key]:
            raise SpkverifError(f"embedding_model.args.{key}: {value!r} is not supported (only {fixed[key]!r})", path)


def campplus_options(
    args: dict[str, Any], state: dict[str, torch.Tensor], embedding: str, section: str, path: Path
) -> dict[str, Any]:
    """Our `campplus` options for a CAM++'s constructor arguments (`section` of the configuration at `path`;
    `embedding`: the name of its embedding size, `embedding_size` in 3D-Speaker, `embed_dim` in WeSpeaker);
    the front width from the weights. One line for a `config_str` other than BatchNorm and ReLU."""
    if args.get("config_str", "batchnorm-relu") != "batchnorm-relu":
        raise SpkverifError(f"{section}.config_str: {args['config_str']!r} is not supported (only 'batchnorm-relu')",
                            path)  # fmt: skip
    front = state.get("head.conv1.weight")
    return {
        "fcm_channels": int(front.shape[0]) if front is not None else 32,
        "tdnn_channels": int(args.get("init_channels", 128)),
        "growth_rate": int(args.get("growth_rate", 32)),
        "bottleneck_ratio": int(args.get("bn_size", 4)),
        "embedding_dim": int(args.get(embedding, 512)),
        "unbiased_std": True,
    }


Architecture = Callable[[dict[str, Any], dict[str, torch.Tensor], Path], tuple[str, dict[str, Any], list]]


def _campplus(args: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
    known = {"feat_dim": 80, "embedding_size": 512, "growth_rate": 32, "bn_size": 4, "init_channels": 128,
             "memory_efficient": True, "config_str": "batchnorm-relu"}  # fmt: skip
    _check_args(args, known, {}, "CAMPPlus", path)
    options = campplus_options(args, state, "embedding_size", "embedding_model.args", path)
    options["pooling_eps"] = 0.0  # 3D-Speaker's statistics: torch.std
    return "campplus", options, campplus_rules()


def _eres2net(defaults: dict[str, Any], version: int) -> Architecture:
    """ERes2Net (`version` 1, with `defaults`: the class's widths) or ERes2NetV2 (2)."""

    def options(args: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
        known = {"feat_dim": 80, "embedding_size": 192, "m_channels": defaults["m_channels"],
                 "num_blocks": [3, 4, 6, 3]}  # fmt: skip
        if version == 2:
            known |= {"baseWidth": 26, "scale": 2, "expansion": 2}
        _check_args(args, known, {"pooling_func": "TSTP", "two_emb_layer": False}, f"ERes2Net{'V2' * (version == 2)}",
                    path)  # fmt: skip
        merged = {**defaults, **known, **args}
        built = {
            "base_channels": int(merged["m_channels"]),
            "blocks": [int(count) for count in merged["num_blocks"]],
            "base_width": int(merged["baseWidth"]),
            "scale": int(merged["scale"]),
            "expansion": int(merged["expansion"]),
            "embedding_dim": int(merged["embedding_size"]),
        }
        return ("eres2net" if version == 1 else "eres2netv2"), built, eres2net_rules(3 if version == 1 else 1)

    return options


# 3D-Speaker's class (`embedding_model.obj`) -> (what it is, how we build it).
ARCHITECTURES: dict[str, tuple[str, Architecture]] = {
    CAMPPLUS: ("CAM++", _campplus),
    ERES2NET: ("ERes2Net", _eres2net({"m_channels": 32, "baseWidth": 32, "scale": 2, "expansion": 2}, 1)),
    ERES2NET_HUGE: ("ERes2Net", _eres2net({"m_channels": 64, "baseWidth": 24, "scale": 3, "expansion": 4}, 1)),
    ERES2NETV2: ("ERes2NetV2", _eres2net({"m_channels": 64}, 2)),
}


def _frontend(config: dict[str, Any], feat_dim: int, path: Path) -> tuple[dict[str, Any], int]:
    """Our front end and sample rate for the configuration's `feature_extractor` (3D-Speaker's FBank of
    `feat_dim` bins at 16 kHz, mean-normalised, where the file has none, as its infer_sv.py)."""
    section = _section(config, "feature_extractor", path) or {"obj": FBANK, "args": {}}
    if section["obj"] != FBANK:
        raise SpkverifError(f"feature_extractor.obj: {section['obj']!r} is not supported (only {FBANK})", path)
    args = section["args"]
    mels, rate = int(args.get("n_mels", feat_dim)), int(args.get("sample_rate", 16000))
    if mels != feat_dim:
        raise SpkverifError(f"feature_extractor.args.n_mels {mels} is not embedding_model.args.feat_dim {feat_dim}",
                            path)  # fmt: skip
    if rate != 16000:
        raise SpkverifError(f"feature_extractor.args.sample_rate: {rate} is not supported (3D-Speaker's FBank "
                            "computes at 16000 Hz only)", path)  # fmt: skip
    if not args.get("mean_nor", True):
        raise SpkverifError("feature_extractor.args.mean_nor: False is not supported (only True)", path)
    return {"name": "3dspeaker_fbank", "options": {"num_mel_bins": mels}}, rate


@IMPORTERS.register("3dspeaker")
def import_3dspeaker(checkpoint: Path, config_path: Path, out: Path) -> dict[str, Any]:
    """3D-Speaker CAM++, ERes2Net or ERes2NetV2: a state_dict (`campplus_voxceleb.bin`,
    `pretrained_eres2net[v2].ckpt`) and the recipe's YAML (`embedding_model`) -> our model file."""
    config = read_yaml(config_path)
    model = _section(config, "embedding_model", config_path)
    if model is None and "obj" in config:  # a file holding the section's content alone
        model = _section({"embedding_model": config}, "embedding_model", config_path)
    if model is None and "model_args" in config:
        raise SpkverifError(f"a WeSpeaker config.yaml (model: {config.get('model')}), not a 3D-Speaker configuration "
                            "(embedding_model: with obj: and args:)", config_path)  # fmt: skip
    if model is None:
        raise SpkverifError("no embedding_model section (obj: and args:): not a 3D-Speaker configuration",
                            config_path)  # fmt: skip
    if model["obj"] not in ARCHITECTURES:
        raise SpkverifError(
            f"embedding_model.obj: {model['obj']!r} is not one we import; choose one of: {', '.join(ARCHITECTURES)}",
            config_path,
        )
    expected, architecture = ARCHITECTURES[model["obj"]]
    state = read_state_dict(checkpoint)
    found = describe_checkpoint(state)
    if found is not None and found != expected:
        raise SpkverifError(f"the checkpoint holds {found}, not the 3D-Speaker {expected} the configuration names "
                            f"({model['obj']})", checkpoint)  # fmt: skip
    name, options, rules = architecture(model["args"], state, config_path)
    frontend, rate = _frontend(config, int(model["args"].get("feat_dim", 80)), config_path)
    origin = {"toolkit": "3dspeaker", "checkpoint": str(checkpoint), "config": str(config_path)}
    arguments = {"options": options, "frontend": frontend, "sample_rate": rate}
    return write_model(name, arguments, state, rules, checkpoint, out, origin)
