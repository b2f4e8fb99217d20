"""WeSpeaker's ResNet (`wespeaker/models/resnet.py`, BasicBlock: ResNet18/34) and ECAPA-TDNN
(`wespeaker/models/ecapa_tdnn.py`, ECAPA_TDNN_[GLOB_]c512/c1024) checkpoints.

Reads WeSpeaker's experiment `config.yaml` (`model`, `model_args`,
`dataset_args.fbank_args`, `dataset_args.resample_rate`) and a checkpoint
(`avg_model.pt`, `model_N.pt`: a state_dict, or one under `state_dict`). The
projection head WeSpeaker trains with (`projection.*`) is dropped; the width
(`m_channels`, `channels`) is read from the first convolution's weights. Builds
our `resnet34` or `ecapa_tdnn` with WeSpeaker's front end (`wespeaker_fbank`: Kaldi
fbank with a Hamming window, mean normalisation) and its formulas: TSTP's unbiased
standard deviation; ECAPA's Res2Net group order and ASTP statistics from raw moments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spkverif.base.errors import SpkverifError
from spkverif.stages.importers import IMPORTERS
from spkverif.stages.importers.common import BATCH_NORM_KEYS, read_state_dict, read_yaml, write_model

RESNET_BLOCKS = {"ResNet18": [2, 2, 2, 2], "ResNet34": [3, 4, 6, 3]}
_BN = BATCH_NORM_KEYS
RESNET_RENAME = [
    (r"conv1\.weight", r"encoder.stem.0.weight"),
    (rf"bn1\.{_BN}", r"encoder.stem.1.\1"),
    (r"layer([1-4])\.(\d+)\.conv1\.weight", r"encoder.stages.<\1>.\2.body.0.weight"),
    (rf"layer([1-4])\.(\d+)\.bn1\.{_BN}", r"encoder.stages.<\1>.\2.body.1.\3"),
    (r"layer([1-4])\.(\d+)\.conv2\.weight", r"encoder.stages.<\1>.\2.body.3.weight"),
    (rf"layer([1-4])\.(\d+)\.bn2\.{_BN}", r"encoder.stages.<\1>.\2.body.4.\3"),
    (r"layer([1-4])\.(\d+)\.shortcut\.([01])\.(.+)", r"encoder.stages.<\1>.\2.shortcut.\3.\4"),
    (r"seg_1\.(weight|bias)", r"encoder.embedding.\1"),
]


def _stage_rules() -> list[tuple[str, str]]:
    """WeSpeaker's layerN is our stages.(N-1): one concrete rule per stage."""
    rules = []
    for pattern, replacement in RESNET_RENAME:
        if "<" not in replacement:
            rules.append((pattern, replacement))
            continue
        for layer in range(1, 5):
            rules.append((pattern.replace("([1-4])", str(layer), 1), replacement.replace(r"<\1>.\2", f"{layer - 1}.\\1")
                          .replace(r"\3", r"\2").replace(r"\4", r"\3")))  # fmt: skip
    return rules


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
    config: dict[str, Any], state: dict[str, torch.Tensor], path: Path, pooling: str, flag: str, keys: tuple[str, ...]
) -> tuple[dict[str, Any], int, int]:
    """model_args (with the pooling and without `flag` we support), mel bins and rate; the keys we read widths from."""
    args = config.get("model_args") or {}
    if args.get("pooling_func", pooling) != pooling:
        raise SpkverifError(
            f"model_args.pooling_func: {args['pooling_func']!r} is not supported (only {pooling})", path
        )
    if args.get(flag, False):
        raise SpkverifError(f"model_args.{flag}: True is not supported", path)
    for key in keys:
        if key not in state:
            raise SpkverifError(f"missing key {key!r}: not a WeSpeaker {config.get('model')} checkpoint", path)
    mels, rate = _fbank_options(config, path, int(args.get("feat_dim", 80)))
    return args, mels, rate


def resnet_options(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Our `resnet34` options for a WeSpeaker ResNet configuration; one-line errors for what does not fit.

    Returns `build_model`'s arguments (options, front end, sample rate)."""
    name = str(config.get("model"))
    args, mels, rate = _checked(config, state, path, "TSTP", "two_emb_layer", ("conv1.weight",))
    options = {
        "base_channels": int(state["conv1.weight"].shape[0]),
        "embedding_dim": int(args.get("embed_dim", 128)),
        "blocks": RESNET_BLOCKS[name],
        "unbiased_std": True,
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
    options = {
        "channels": int(state["layer1.conv.weight"].shape[0]),
        "aggregate_channels": int(state["conv.weight"].shape[0]),
        "attention_bottleneck": int(state["pool.linear1.weight"].shape[0]),
        "embedding_dim": int(args.get("embed_dim", 192)),
        "global_context": "GLOB" in name,
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
    return "resnet34", resnet_options(config, state, path), _stage_rules()


def _ecapa(config: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict, list]:
    return "ecapa_tdnn", ecapa_options(config, state, path), ecapa_rules()


ARCHITECTURES = {
    **{name: _resnet for name in RESNET_BLOCKS},
    **{f"ECAPA_TDNN{glob}_c{width}": _ecapa for glob in ("", "_GLOB") for width in (512, 1024)},
}


@IMPORTERS.register("wespeaker")
def import_wespeaker(checkpoint: Path, config_path: Path, out: Path) -> dict[str, Any]:
    """WeSpeaker ResNet18/34 or ECAPA-TDNN: `avg_model.pt` and the experiment's `config.yaml` -> our model file."""
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
