"""SpeechBrain's ECAPA-TDNN (`speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`, as in spkrec-ecapa-voxceleb).

Reads `hyperparams.yaml` (HyperPyYAML, read as plain data: nothing of it is
executed) for `embedding_model` (ECAPA_TDNN), `compute_features` (Fbank) and
`mean_var_norm` (InputNormalization), and `embedding_model.ckpt` (a state_dict).
Builds our `ecapa_tdnn` with SpeechBrain's layout (reflect padding, BatchNorm
after the aggregation and in the attention, pooling epsilon 1e-12) and
SpeechBrain's filterbank as its front end (`speechbrain_fbank`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.stages.importers import IMPORTERS
from spkverif.stages.importers.common import BATCH_NORM_KEYS, read_state_dict, read_yaml, write_model

_BN = BATCH_NORM_KEYS
_TDNN = r"conv\.conv\.(weight|bias)"


def rename_rules() -> list[tuple[str, str]]:
    """SpeechBrain key (regex) -> ours. SpeechBrain wraps torch modules (`conv.conv`, `norm.norm`); its block i
    is our block i - 1, whose body is [tdnn1, res2net, tdnn2, SE]; its SE convolutions are our gate's linears 0, 2."""
    rules = [(rf"blocks\.0\.{_TDNN}", r"encoder.stem.0.\1"), (rf"blocks\.0\.norm\.norm\.{_BN}", r"encoder.stem.2.\1")]
    for block in (1, 2, 3):
        ours = f"encoder.blocks.{block - 1}.body"
        for theirs, index in (("1", 0), ("2", 2)):
            rules += [
                (rf"blocks\.{block}\.tdnn{theirs}\.{_TDNN}", rf"{ours}.{index}.0.\1"),
                (rf"blocks\.{block}\.tdnn{theirs}\.norm\.norm\.{_BN}", rf"{ours}.{index}.2.\1"),
                (rf"blocks\.{block}\.se_block\.conv{theirs}\.conv\.(weight|bias)", rf"{ours}.3.gate.{index}.\1"),
            ]
        rules += [
            (rf"blocks\.{block}\.res2net_block\.blocks\.(\d+)\.{_TDNN}", rf"{ours}.1.convolutions.\1.0.\2"),
            (rf"blocks\.{block}\.res2net_block\.blocks\.(\d+)\.norm\.norm\.{_BN}", rf"{ours}.1.convolutions.\1.2.\2"),
        ]
    rules += [
        (rf"mfa\.{_TDNN}", r"encoder.aggregate.0.\1"),
        (rf"mfa\.norm\.norm\.{_BN}", r"encoder.aggregate.2.\1"),
        (rf"asp\.tdnn\.{_TDNN}", r"encoder.pooling.attention.0.\1"),
        (rf"asp\.tdnn\.norm\.norm\.{_BN}", r"encoder.pooling.attention.2.\1"),
        (r"asp\.conv\.conv\.(weight|bias)", r"encoder.pooling.attention.4.\1"),
        (rf"asp_bn\.norm\.{_BN}", r"encoder.pooling_norm.\1"),
        (r"fc\.conv\.(weight|bias)", r"encoder.embedding.\1"),
    ]
    return rules


def _section(hparams: dict[str, Any], key: str, kind: str, path: Path) -> dict[str, Any]:
    section = hparams.get(key)
    if not isinstance(section, dict) or not str(section.get("__tag__", "")).endswith(kind):
        found = section.get("__tag__") if isinstance(section, dict) else section
        raise SpkverifError(f"`{key}` must be a !new:...{kind}, found {found!r}", path)
    return section


def ecapa_options(hparams: dict[str, Any], path: Path) -> dict[str, Any]:
    """Our `ecapa_tdnn` options, front end and rate (`build_model`'s arguments) for SpeechBrain's
    hyperparameters; one-line errors for what we cannot build."""
    model = _section(hparams, "embedding_model", "ECAPA_TDNN", path)
    features = _section(hparams, "compute_features", "Fbank", path)
    norm = hparams.get("mean_var_norm")
    if norm is not None:
        norm = _section(hparams, "mean_var_norm", "InputNormalization", path)
        if norm.get("norm_type", "global") != "sentence" or norm.get("std_norm", True):
            raise SpkverifError("mean_var_norm: only norm_type: sentence with std_norm: False is supported", path)
    for flag in ("deltas", "context", "requires_grad"):
        if features.get(flag):
            raise SpkverifError(f"compute_features: {flag}: True is not supported", path)
    fixed = {"n_fft": 400, "win_length": 25, "hop_length": 10, "f_min": 0, "f_max": None, "filter_shape": "triangular"}
    for key, value in fixed.items():
        if features.get(key, value) != value:
            raise SpkverifError(f"compute_features: {key}: {features[key]!r} is not supported (only {value!r})", path)
    channels = model.get("channels", [512, 512, 512, 512, 1536])
    for key, expected in (("kernel_sizes", [5, 3, 3, 3, 1]), ("dilations", [1, 2, 3, 4, 1]), ("groups", [1] * 5)):
        if list(model.get(key, expected)) != expected:
            raise SpkverifError(f"embedding_model: {key}: {model[key]} does not fit ECAPA-TDNN's {expected}", path)
    if len(channels) != 5 or len(set(channels[:4])) != 1:
        raise SpkverifError(f"embedding_model: channels: {channels} does not fit [C, C, C, C, aggregate]", path)
    mels = features.get("n_mels", 40)
    if model.get("input_size") != mels:
        raise SpkverifError(f"embedding_model: input_size {model.get('input_size')} is not n_mels {mels}", path)
    options = {
        "channels": channels[0],
        "aggregate_channels": channels[4],
        "embedding_dim": model.get("lin_neurons", 192),
        "scale": model.get("res2net_scale", 8),
        "se_bottleneck": model.get("se_channels", 128),
        "attention_bottleneck": model.get("attention_channels", 128),
        "global_context": bool(model.get("global_context", True)),
        "padding_mode": "reflect",
        "aggregate_norm": True,
        "attention_norm": True,
        "pooling_eps": 1e-12,
    }
    return {
        "options": options,
        "frontend": {"name": "speechbrain_fbank", "options": {"num_mel_bins": mels}},
        "sample_rate": int(features.get("sample_rate", hparams.get("sample_rate", 16000))),
    }


@IMPORTERS.register("speechbrain")
def import_speechbrain(checkpoint: Path, hparams_path: Path, out: Path) -> dict[str, Any]:
    """SpeechBrain ECAPA-TDNN: `embedding_model.ckpt` and `hyperparams.yaml` -> our `ecapa_tdnn` model file."""
    options = ecapa_options(read_yaml(hparams_path), hparams_path)
    state = read_state_dict(checkpoint)
    origin = {"toolkit": "speechbrain", "checkpoint": str(checkpoint), "hparams": str(hparams_path)}
    return write_model("ecapa_tdnn", options, state, rename_rules(), checkpoint, out, origin)
