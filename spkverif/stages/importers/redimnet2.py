"""IDRnD's ReDimNet2 checkpoints (github.com/PalabraAI/redimnet2, `redimnet2/redimnet2.py`'s `ReDimNet2Wrap`).

A release file (`b0-vox2-lm.pt` ... `b6-vox2-lm.pt`, `b6-vb2+vox2_v0-lm.pt`, `b3|b6-vb2+vox2+cnc2_v0-*.pt`,
as its `hubconf.py` downloads them) is, like ReDimNet's, one `torch.save`d dict of `model_config`
(the wrapper's keyword arguments) and `state_dict`, so no `--config`. It becomes our `redimnet2`
(every value of the file's configuration given explicitly; keys it leaves out take `ReDimNet2Wrap`'s
defaults, `PEER_DEFAULTS`) on `redimnet2_mel`, the front end IDRnD's `TFMelBanks` (`feat_type: tf`)
computes. SpecAugment and dropout settings are training's and are left out; a classification head
is dropped; the front end's buffers (`spec.*`) are rebuilt; stage 0's mixing weight, a constant one,
has no counterpart. The configurations `spkverif.models.redimnet2` does not build (causal, subnet,
`v2_`/`sdwm_` 1-D blocks, PyTorch features, ...) are one line each.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.models.redimnet import BLOCKS_2D, MIXERS_1D
from spkverif.stages.importers import IMPORTERS, carries_config
from spkverif.stages.importers.common import write_model
from spkverif.stages.importers.redimnet import HEAD_RENAME, _stage_key, inner_key, read_checkpoint

# ReDimNet2Wrap's defaults for the keys a configuration may leave out (its default stages_setup included).
PEER_DEFAULTS: dict[str, Any] = {
    "F": 72, "C": 24, "block_1d_type": "conv+att", "block_2d_type": "basic_resnet", "group_divisor": 1,
    "dual_agg": False, "agg_gnorm": False, "return_2d_output": False, "out_channels": None, "embed_dim": 192,
    "global_context_att": True, "emb_bn": False, "hop_length": 160,
    "spec_params": {"do_spec_aug": False, "do_preemph": True, "norm_signal": True},
    "stages_setup": [((1, 1), 2, 4, [(3, 3)], 24), ((2, 1), 3, 3, [(3, 3)], 24), ((1, 2), 4, 2, [(3, 3)], 24),
                     ((2, 1), 5, 1, [(3, 3)], 24), ((1, 2), 4, 1, [(3, 3)], 24), ((2, 1), 3, 1, [(3, 3)], 24)],
}  # fmt: skip
# Keys that must hold what we build (the first value is the wrapper's default where it has one).
REQUIRED = {
    "pooling_func": ("ASTP",), "feat_type": ("tf", "tf_mel"), "causal": ("none", False), "spec_in_channels": (1,),
    "compress_tconvs": (True,), "use_freq_pos_enc": (False,), "fm_weigthing_type": ("NC",),
    "pad_right_samples": (None,), "before_pool_offset": (None,),
}  # fmt: skip
TRAINING_KEYS = ("num_classes", "feat_agg_dropout", "head_activation", "return_all_outputs", "att_dos")
FORMAT = "IDRnD's ReDimNet2 checkpoint: a dict of 'model_config' and 'state_dict'"
# spec_params: TFMelBanks options we build (-> redimnet2_mel's), those training alone uses.
SPECTROGRAM_KEYS = {"n_fft": "n_fft", "win_length": "win_length", "f_min": "f_min", "f_max": "f_max",
                    "norm_signal": "normalize_signal"}  # fmt: skip
AUGMENTATION_KEYS = ("do_spec_aug", "freq_start_bin", "freq_mask_width", "time_mask_width")
TF_MEL_DEFAULTS = {"norm_signal": False, "do_preemph": True, "sample_rate": 16000}  # TFMelBanks' own
DROPPED = re.compile(r"(spec|cls_head|projection)\..+|backbone\.stage0(_pre)?\.0\.w")


def _context_key(match: re.Match[str]) -> str:
    return f"encoder.stages.{match.group(1)}.context.{inner_key(match.group(2))}"


RENAME = [
    (r"backbone\.stage(\d+)(?:_pre)?\.0\.w", r"encoder.stages.\1.mix.logits"),
    (r"backbone\.stage(\d+)\.(\d+)\.(.+)", _stage_key),
    (r"backbone\.stage(\d+)_pre\.(\d+)\.(.+)", _stage_key),
    (r"backbone\.stage(\d+)_1d\.(.+)", _context_key),
    (r"backbone\.stage(\d+)_up_2d\.(\d+\.(?:weight|bias))", r"encoder.stages.\1.maps_out.\2"),
    (r"backbone\.stage(\d+)_up_1d\.(\d+\.(?:weight|bias))", r"encoder.stages.\1.context_out.\2"),
    (r"backbone\.stem\.([01])\.(weight|bias)", r"encoder.stem.\1.\2"),
    (r"backbone\.stem_gnorm\.(weight|bias)", r"encoder.stem_norm.\1"),
    (r"backbone\.fin_wght1d\.w", "encoder.mix.logits"),
    (r"backbone\.head\.(weight|bias)", r"encoder.head.\1"),
    *HEAD_RENAME,
]


def _stages(setup: Any, path: Path) -> list[list[float]]:
    """stages_setup rows ((freq stride, time stride), blocks, expansion, kernels, reduction or None) -> ours."""
    try:
        rows = [(stride, blocks, expansion, kernels, reduction) for stride, blocks, expansion, kernels, reduction
                in setup]  # fmt: skip
        if any(not isinstance(stride, (list, tuple)) for stride, *_ in rows):
            raise SpkverifError(
                "model_config stages_setup has one stride a stage: a ReDimNet checkpoint (IDRnD/redimnet), not "
                "ReDimNet2's; import it with `spkverif import redimnet`", path
            )  # fmt: skip
        stages = [[int(stride[0]), int(stride[1]), int(blocks), float(expansion), int(reduction or 0)]
                  for stride, blocks, expansion, _, reduction in rows]  # fmt: skip
    except (TypeError, ValueError):
        raise SpkverifError(f"model_config stages_setup: {setup!r} is not ReDimNet2's", path) from None
    kernels = {tuple(tuple(int(k) for k in kernel) for kernel in row[3]) for row in rows}
    if kernels - {((3, 3),)}:
        raise SpkverifError(f"model_config stages_setup: 2-D kernels {sorted(kernels)} (only [(3, 3)] is built)", path)
    return stages


def redimnet2_arguments(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """`build_model`'s arguments (options, front end, sample rate) for a ReDimNet2Wrap configuration;
    one line for a key or value our `redimnet2` does not build."""
    unknown = [key for key in config if key not in (*PEER_DEFAULTS, *REQUIRED, *TRAINING_KEYS)]
    if unknown:
        hint = " (a ReDimNet checkpoint? `spkverif import redimnet`)" if "tf_optimized_arch" in config else ""
        raise SpkverifError(
            f"model_config has {', '.join(map(repr, unknown[:3]))}, which ReDimNet2's (PalabraAI/redimnet2) has "
            f"not{hint}", path
        )  # fmt: skip
    value = {**PEER_DEFAULTS, **config}
    stages = _stages(value["stages_setup"], path)
    for key, supported in REQUIRED.items():
        if key in config and config[key] not in supported:
            raise SpkverifError(f"model_config {key}: {config[key]!r} is not supported (only {supported[0]!r})", path)
    if "feat_type" not in config:
        raise SpkverifError("model_config lacks feat_type: only 'tf' (TFMelBanks) features are supported", path)
    for key, choices in (("block_1d_type", MIXERS_1D), ("block_2d_type", BLOCKS_2D)):
        if value[key] not in choices:
            raise SpkverifError(f"model_config {key}: {value[key]!r} is not one of {', '.join(choices)}", path)
    if value["group_divisor"] is None:
        raise SpkverifError("model_config group_divisor: None (ungrouped convolutions) is not supported", path)
    channels, bins = int(value["C"]), int(value["F"])
    groups = value["agg_gnorm"]
    if groups not in (True, False, None, 0) and groups != channels:
        raise SpkverifError(f"model_config agg_gnorm: {groups!r} groups (only True, C = {channels} groups)", path)
    options = {
        "channels": channels,
        "stages": stages,
        "out_channels": int(value["out_channels"] or 0),
        "block_2d": value["block_2d_type"],
        "block_1d": value["block_1d_type"],
        "group_divisor": int(value["group_divisor"]),
        "group_norm": bool(groups),
        "dual_outputs": bool(value["dual_agg"]),
        "maps_head": bool(value["return_2d_output"]),
        "global_context": bool(value["global_context_att"]),
        "embedding_dim": int(value["embed_dim"]),
        "embedding_norm": bool(value["emb_bn"]),
    }
    frontend, rate = _frontend_options(value, bins, path)
    return {"options": options, "frontend": {"name": "redimnet2_mel", "options": frontend}, "sample_rate": rate}


def _frontend_options(config: dict[str, Any], bins: int, path: Path) -> tuple[dict[str, Any], int]:
    spec = {**TF_MEL_DEFAULTS, **(config["spec_params"] or {})}
    unknown = [key for key in spec if key not in (*SPECTROGRAM_KEYS, *AUGMENTATION_KEYS, *TF_MEL_DEFAULTS, "eps")]
    if unknown:
        raise SpkverifError(f"model_config spec_params: {', '.join(map(repr, unknown[:3]))} not supported", path)
    if not math.isclose(float(spec.get("eps", 1e-8)), 1e-8):
        raise SpkverifError(f"model_config spec_params eps: {spec['eps']!r} is not supported (only 1e-08)", path)
    options = {ours: spec[theirs] for theirs, ours in SPECTROGRAM_KEYS.items() if theirs in spec}
    options.update(num_mel_bins=bins, hop_length=int(config["hop_length"]), normalize_signal=bool(spec["norm_signal"]))
    if not spec["do_preemph"]:
        options["preemphasis"] = 0.0
    return options, int(spec["sample_rate"])


@IMPORTERS.register("redimnet2")
@carries_config
def import_redimnet2(checkpoint: Path, config_path: Path | None, out: Path) -> dict[str, Any]:
    """IDRnD's ReDimNet2 (B0-B6): a release `.pt` holding its own model_config -> our model file."""
    if config_path is not None:
        raise SpkverifError("a ReDimNet2 checkpoint carries its configuration: leave out --config", config_path)
    config, state = read_checkpoint(checkpoint, FORMAT)
    arguments = redimnet2_arguments(config, checkpoint)
    state = {key: value for key, value in state.items() if not DROPPED.fullmatch(key)}
    origin = {"toolkit": "redimnet2", "checkpoint": str(checkpoint)}
    return write_model("redimnet2", arguments, state, RENAME, checkpoint, out, origin)
