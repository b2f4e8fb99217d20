"""IDRnD's ReDimNet checkpoints (github.com/IDRnD/redimnet, `redimnet/model.py`'s `ReDimNetWrap`).

A release file (`b6-vox2-ptn.pt`, `b6-vox2-ft_lm.pt`, ... as its `hubconf.py` downloads them)
is one `torch.save`d dict: `model_config` (the wrapper's keyword arguments) and `state_dict`.
The configuration is inside, so no `--config`. It becomes our `redimnet` (`size` b2 with every
value of the file's configuration given explicitly) on `redimnet_mel`, the front end IDRnD's
`MelBanks` computes: mel bins `F`, `hop_length` and the spectrogram options of `spec_params`.
SpecAugment, dropout and `return_all_outputs` settings are training's and are left out; a
classification head (`num_classes`, `cls_head.*`) is dropped; the front end's buffers
(`spec.*`, fixed by the configuration) are rebuilt. Stage 0's mixing weight, a constant one,
has no counterpart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from spkverif.base.errors import SpkverifError
from spkverif.models.files import load_safely
from spkverif.models.redimnet import BLOCKS_2D, MIXERS_1D
from spkverif.stages.importers import IMPORTERS, carries_config
from spkverif.stages.importers.common import BATCH_NORM_KEYS, write_model

FORMAT = "IDRnD's ReDimNet checkpoint: a dict of 'model_config' and 'state_dict'"
# model_config keys of ReDimNetWrap, by what becomes of them.
STRUCTURE_KEYS = ("F", "C", "block_1d_type", "block_2d_type", "stages_setup", "group_divisor", "out_channels",
                  "embed_dim", "emb_bn", "global_context_att", "hop_length", "spec_params")  # fmt: skip
REQUIRED = {"pooling_func": ("ASTP",), "feat_type": ("pt", "pt_mel"), "tf_optimized_arch": (False,)}
TRAINING_KEYS = ("num_classes", "class_dropout", "feat_agg_dropout", "head_activation", "return_all_outputs")
# spec_params: MelBanks options we build (-> redimnet_mel's), those training alone uses, and IDRnD's defaults.
SPECTROGRAM_KEYS = {"n_fft": "n_fft", "win_length": "win_length", "f_min": "f_min", "f_max": "f_max"}
AUGMENTATION_KEYS = ("do_spec_aug", "freq_start_bin", "num_apply_spec_aug", "freq_mask_width", "time_mask_width")
DROPPED = re.compile(r"(spec|cls_head)\..+|backbone\.stage0\.0\.w")

# Inside a stage's layers: IDRnD's names -> ours (applied in order to the rest of the key).
_INNER = [
    (r"conv_block\.", ""),
    (r"dwconvs\.", "depthwise."),
    (r"pwconv1\.", "pointwise."),
    (r"conv([12])pw\.", r"pointwise\1."),
    (rf"bn([12])\.{BATCH_NORM_KEYS}$", r"norm\1.\2"),
    (r"se\.squeeze\.", "excitation.gate.0."),
    (r"se\.exitation\.", "excitation.gate.2."),
    (r"red_dim_conv\.", "reduce."),
    (r"tcm\.", "mixer."),
    (r"exp_dim_conv\.", "expand."),
    (r"attention\.q_proj\.", "attention.query."),
    (r"attention\.k_proj\.", "attention.key."),
    (r"attention\.v_proj\.", "attention.value."),
    (r"attention\.out_proj\.", "attention.output."),
    (r"(^|\.)layer_norm\.", r"\1norm1."),
    (r"final_layer_norm\.", "norm2."),
    (r"feed_forward\.intermediate_dense\.", "feed_forward.0."),
    (r"feed_forward\.output_dense\.", "feed_forward.2."),
]


def inner_key(rest: str) -> str:
    """A block's key below its stage layer, IDRnD's names -> ours (`_INNER`, in order)."""
    for pattern, replacement in _INNER:
        rest = re.sub(pattern, replacement, rest)
    return rest


def _stage_key(match: re.Match[str]) -> str:
    """backbone.stageI.J.REST -> encoder.stages.I.body.(J-1).REST': IDRnD's stage starts with its mixing
    layer (our `mix`), so its layer J is our body's J - 1."""
    return f"encoder.stages.{match.group(1)}.body.{int(match.group(2)) - 1}.{inner_key(match.group(3))}"


# The attentive pooling, its BatchNorm, the embedding layer and its BatchNorm: the same in ReDimNet2.
HEAD_RENAME = [
    (r"pool\.linear1\.(weight|bias)", r"encoder.pooling.attention.0.\1"),
    (r"pool\.linear2\.(weight|bias)", r"encoder.pooling.attention.2.\1"),
    (rf"bn\.{BATCH_NORM_KEYS}", r"encoder.pooling_norm.\1"),
    (r"linear\.(weight|bias)", r"encoder.embedding.\1"),
    (rf"bn2\.{BATCH_NORM_KEYS}", r"encoder.embedding_norm.\1"),
]


RENAME = [
    (r"backbone\.stage(\d+)\.0\.w", r"encoder.stages.\1.mix.logits"),
    (r"backbone\.stage(\d+)\.(\d+)\.(.+)", _stage_key),
    (r"backbone\.stem\.([01])\.(weight|bias)", r"encoder.stem.\1.\2"),
    (r"backbone\.fin_wght1d\.w", "encoder.mix.logits"),
    (r"backbone\.mfa\.(.+)", r"encoder.aggregate.\1"),
    *HEAD_RENAME,
]


def read_checkpoint(path: Path, expected: str = FORMAT) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The file's `model_config` and `state_dict`; one line naming what it holds instead and the `expected`
    format (SpkverifError)."""
    if not path.is_file():
        raise SpkverifError("no such checkpoint", path)
    payload = load_safely(path, "not a PyTorch checkpoint of weights", "not a readable PyTorch checkpoint")
    if not isinstance(payload, dict):
        raise SpkverifError(f"found a {type(payload).__name__}, expected {expected}", path)
    config, state = payload.get("model_config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        keys = ", ".join(repr(key) for key in list(payload)[:3]) + (" ..." if len(payload) > 3 else "")
        tensors = payload and all(isinstance(value, torch.Tensor) for value in payload.values())
        what = "a state_dict alone" if tensors else "a dict"
        raise SpkverifError(f"found {what} (keys {keys}), expected {expected}", path)
    return config, state


def redimnet_arguments(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """`build_model`'s arguments (options, front end, sample rate) for a ReDimNetWrap configuration;
    one line for a key or value our `redimnet` does not build."""
    unknown = [key for key in config if key not in (*STRUCTURE_KEYS, *REQUIRED, *TRAINING_KEYS)]
    if unknown:
        raise SpkverifError(
            f"model_config has {', '.join(map(repr, unknown[:3]))}, which ReDimNet's (IDRnD/redimnet) has not: "
            "a checkpoint of another network (ReDimNet2? `spkverif import redimnet2`)", path
        )  # fmt: skip
    for key, supported in REQUIRED.items():
        if config.get(key, supported[0]) not in supported:
            raise SpkverifError(f"model_config {key}: {config[key]!r} is not supported (only {supported[0]!r})", path)
    for key, choices in (("block_1d_type", MIXERS_1D), ("block_2d_type", BLOCKS_2D)):
        if key in config and config[key] not in choices:
            raise SpkverifError(f"model_config {key}: {config[key]!r} is not one of {', '.join(choices)}", path)
    missing = [key for key in ("F", "C", "stages_setup", "block_1d_type", "block_2d_type") if key not in config]
    if missing:
        raise SpkverifError(f"model_config lacks {', '.join(missing)}, which our redimnet needs spelled out", path)
    if config.get("group_divisor", 4) is None:
        raise SpkverifError("model_config group_divisor: None (ungrouped convolutions) is not supported", path)
    try:
        stages = [[int(stride), int(blocks), int(expansion), int(reduction or 0)]
                  for stride, blocks, expansion, _, reduction in config["stages_setup"]]  # fmt: skip
    except (TypeError, ValueError):
        raise SpkverifError(f"model_config stages_setup: {config['stages_setup']!r} is not ReDimNet's", path) from None
    options = {
        "channels": int(config["C"]),
        "stages": stages,
        "block_2d": config["block_2d_type"],
        "block_1d": config["block_1d_type"],
        "group_divisor": int(config.get("group_divisor", 4)),
        "global_context": bool(config.get("global_context_att", False)),
        "out_channels": int(config.get("out_channels") or 0),
        "embedding_dim": int(config.get("embed_dim", 192)),
        "embedding_norm": bool(config.get("emb_bn", False)),
    }
    frontend, rate = _frontend_options(config, path)
    return {"options": options, "frontend": {"name": "redimnet_mel", "options": frontend}, "sample_rate": rate}


def _frontend_options(config: dict[str, Any], path: Path) -> tuple[dict[str, Any], int]:
    spec = dict(config.get("spec_params") or {})
    unknown = [key for key in spec if key not in (*SPECTROGRAM_KEYS, *AUGMENTATION_KEYS, "sample_rate", "norm_signal",
                                                  "do_preemph", "spec_norm")]  # fmt: skip
    if unknown:
        raise SpkverifError(f"model_config spec_params: {', '.join(map(repr, unknown[:3]))} not supported", path)
    if spec.get("norm_signal", False):
        raise SpkverifError("model_config spec_params norm_signal: True is not supported", path)
    if spec.get("spec_norm", "mn") not in ("mn", "mvn"):
        raise SpkverifError(f"model_config spec_params spec_norm: {spec['spec_norm']!r} is not supported", path)
    options = {ours: spec[theirs] for theirs, ours in SPECTROGRAM_KEYS.items() if theirs in spec}
    options.update(num_mel_bins=int(config["F"]), hop_length=int(config.get("hop_length", 160)),
                   spec_norm=spec.get("spec_norm", "mn"))  # fmt: skip
    if not spec.get("do_preemph", True):
        options["preemphasis"] = 0.0
    return options, int(spec.get("sample_rate", 16000))


@IMPORTERS.register("redimnet")
@carries_config
def import_redimnet(checkpoint: Path, config_path: Path | None, out: Path) -> dict[str, Any]:
    """IDRnD's ReDimNet (B0-B6, M, S): a release `.pt` holding its own model_config -> our model file."""
    if config_path is not None:
        raise SpkverifError("a ReDimNet checkpoint carries its configuration: leave out --config", config_path)
    config, state = read_checkpoint(checkpoint)
    arguments = redimnet_arguments(config, checkpoint)
    state = {key: value for key, value in state.items() if not DROPPED.fullmatch(key)}
    origin = {"toolkit": "redimnet", "checkpoint": str(checkpoint)}
    return write_model("redimnet", arguments, state, RENAME, checkpoint, out, origin)
