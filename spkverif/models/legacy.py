"""Model specifications and configurations written before front ends were components.

Until front ends had their own registry (`spkverif.frontends.FRONTENDS`) and
configuration section (`frontend:`), each model builder took its front end's
options among its own: `num_mel_bins` and `dither` (Kaldi fbank; `frontend` named
another filterbank for `ecapa_tdnn` and `resnet34`), SincNet's options for
`sinc_tdnn` (`sinc_channels` for SincNet's `channels`), and `sample_rate`. A model
file or training checkpoint of that time holds `{"name", "options"}` with those
keys inside `options`; `upgrade_spec` splits them out, so such a file rebuilds the
same network (same modules, same state_dict keys, same features) it was saved from.
"""

from __future__ import annotations

from typing import Any

from spkverif.models.registry import default_frontend

_FBANK = {"num_mel_bins": "num_mel_bins", "dither": "dither"}
_SINC = {
    key: key
    for key in ("num_filters", "kernel_size", "stride", "waveform_norm", "instance_norm", "min_low_hz", "min_band_hz")
}
# model -> {old model option: front-end option}
FRONTEND_OPTIONS: dict[str, dict[str, str]] = {
    "xvector": _FBANK,
    "ecapa_tdnn": _FBANK,
    "resnet34": _FBANK,
    "sinc_tdnn": {**_SINC, "sinc_channels": "channels"},
}
# models whose old `frontend` option named their filterbank
NAMED_FILTERBANK = ("ecapa_tdnn", "resnet34")
# front-end options an old builder took and dropped for that front end
IGNORED = {"speechbrain_fbank": ("dither",)}


def split_options(model: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """Old model options -> (model options, front end `{"name", "options"}`, sample rate or None).

    The front end's name is '' (the model's default) unless the old options named
    one; keys that were never front-end options stay with the model.
    """
    moves = FRONTEND_OPTIONS.get(model, {})
    kept, moved, name, rate = {}, {}, "", None
    for key, value in options.items():
        if key == "sample_rate":
            rate = value
        elif key == "frontend" and model in NAMED_FILTERBANK:
            name = str(value)
        elif key in moves:
            moved[moves[key]] = value
        else:
            kept[key] = value
    for key in IGNORED.get(name, ()):
        moved.pop(key, None)
    return kept, {"name": name, "options": moved}, rate


def is_legacy(spec: dict[str, Any]) -> bool:
    """Whether a model file's `model` entry is of the old shape (no `frontend` of its own)."""
    return "frontend" not in spec


def upgrade_spec(spec: dict[str, Any], sample_rate: int | None = None) -> dict[str, Any]:
    """A model file's `model` entry in today's shape (`build_model`'s arguments); a new one is returned as is.

    `sample_rate` is the file's own (its payload's `sample_rate`), for an old spec
    whose options do not name one; 16000 Hz, the old builders' default, without either.
    """
    if not is_legacy(spec):
        return spec
    options, frontend, rate = split_options(spec["name"], spec.get("options") or {})
    frontend["name"] = frontend["name"] or default_frontend(spec["name"])
    return {"name": spec["name"], "options": options, "frontend": frontend, "sample_rate": rate or sample_rate or 16000}
