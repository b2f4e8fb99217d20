"""The model registry; kept apart from the package init so model modules can import it.

A model's builder takes the built front end first (`spkverif.frontends`), then its
encoder's options; `uses_frontend` names the front end it gets when a configuration
names none (`frontend:` left empty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from spkverif.base.registry import Registry

MODELS: Registry = Registry("model")

B = TypeVar("B", bound=Callable)


def uses_frontend(name: str) -> Callable[[B], B]:
    """Decorator: record `name` (a `FRONTENDS` name) as the builder's default front end."""

    def mark(builder: B) -> B:
        builder.default_frontend = name  # type: ignore[attr-defined]
        return builder

    return mark


def default_frontend(model: str) -> str:
    """The front end model `model` is built on when none is named (`SpkverifError` for an unknown model)."""
    return MODELS.get(model).default_frontend
