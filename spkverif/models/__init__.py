"""Embedding networks, registered by name (`--model NAME`), each on a front end of `spkverif.frontends`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spkverif.frontends import build_frontend
from spkverif.models import campplus, ecapa, eres2net, mhfa, redimnet, redimnet2, resnet, tdnn  # noqa: F401  (register their models)
from spkverif.models.base import SpeakerEmbeddingModel, count_parameters
from spkverif.models.registry import MODELS, default_frontend


def build_model(
    name: str,
    options: dict[str, Any] | None = None,
    frontend: Mapping[str, Any] | None = None,
    sample_rate: int = 16000,
) -> SpeakerEmbeddingModel:
    """Build the registered model `name` with `options` on `frontend`, for audio at `sample_rate` Hz.

    `frontend` is `{"name": NAME, "options": {...}}` (a `FRONTENDS` name; an empty or
    missing name is the model's own default, e.g. `kaldi_fbank` for `xvector`,
    `sinc` for `sinc_tdnn`). The front end is built first, then the encoder, so
    the weights' initialisation draws random numbers in that order.

    `model.spec` records how, with the front end's name resolved:
    `{"name", "options", "frontend": {"name", "options"}, "sample_rate"}`, the
    arguments of this function, so `build_model(**model.spec)` rebuilds the network
    (a front end whose options name files outside the model file, such as a
    self-supervised model's directory, records instead the `spec_options` it offers).
    Raises `SpkverifError` for an unknown model or front end, an unknown option or
    a value out of its range.
    """
    options = dict(options or {})
    frontend = dict(frontend or {})
    frontend_name = str(frontend.get("name") or default_frontend(name))
    frontend_options = dict(frontend.get("options") or {})
    built = build_frontend(frontend_name, frontend_options, sample_rate)
    model = MODELS.build(name, built, **options)
    model.spec = {
        "name": name,
        "options": options,
        "frontend": {"name": frontend_name, "options": getattr(built, "spec_options", frontend_options)},
        "sample_rate": sample_rate,
    }
    return model


__all__ = ["MODELS", "SpeakerEmbeddingModel", "build_model", "count_parameters"]
