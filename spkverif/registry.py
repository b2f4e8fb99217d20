"""Registries by name: models, losses, back ends and corpora are looked up here.

Adding a component means writing one module that decorates its builder with
`REGISTRY.register("name")`; nothing else changes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from spkverif.errors import SpkverifError

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """A name -> builder map whose misses are user errors listing the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(builder: T) -> T:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def get(self, name: str) -> T:
        try:
            return self._builders[name]
        except KeyError:
            raise SpkverifError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def build(self, name: str, *args: Any, **params: Any) -> Any:
        """Call the builder, turning unknown or missing options into user errors."""
        builder = self.get(name)
        check_options(builder, params, f"{self.kind} {name!r}")
        return builder(*args, **params)


def check_options(builder: Callable[..., Any], params: dict[str, Any], what: str) -> None:
    """Reject options a builder does not take, naming the ones it does."""
    signature = inspect.signature(builder)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = [
        name
        for name, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SpkverifError(
            f"{what} has no option {', '.join(map(repr, unknown))}; its options are: {', '.join(accepted) or '(none)'}"
        )
