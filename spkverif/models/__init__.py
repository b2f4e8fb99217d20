"""Embedding networks, registered by name (`--model NAME`)."""

from __future__ import annotations

from typing import Any

from spkverif.models import ecapa, resnet, tdnn  # noqa: F401  (register their models)
from spkverif.models.base import SpeakerEmbeddingModel, count_parameters
from spkverif.models.registry import MODELS


def build_model(name: str, options: dict[str, Any] | None = None) -> SpeakerEmbeddingModel:
    """Build a registered model; `model.spec` records how, for checkpoints."""
    options = dict(options or {})
    model = MODELS.build(name, **options)
    model.spec = {"name": name, "options": options}
    return model


__all__ = ["MODELS", "SpeakerEmbeddingModel", "build_model", "count_parameters"]
