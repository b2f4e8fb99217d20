"""Registries by name: models, losses, back ends and the training schedules are looked up here.

Adding a component means writing one module that decorates its builder with
`REGISTRY.register("name")`; nothing else changes: `--help`, `spkverif list` and the
option checks all read the registry and the builder.

A builder describes itself:
- the first line (paragraph) of its docstring is the one-line description `--help` shows;
- its parameters with defaults are its options (those without are supplied by the
  caller, e.g. a loss's embedding_dim and num_classes, a front end's sample_rate);
  a class may be registered as its own builder (its `__init__` is the signature);
- an option's valid values are declared in its annotation, checked by
  `Registry.build` and shown by `spkverif list`:
  `margin: Annotated[float, Range(gt=0)] = 0.2`, `mining: Annotated[str, OneOf(MINERS)]`.

A new registry goes into the catalogue (`spkverif.stages.catalogue`) with the option that
takes its names, so `--help` and `spkverif list` show it; the test suite fails for a
registry left out of the catalogue.

This module is of the base layer: it imports nothing of spkverif but `spkverif.base`.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spkverif.base.errors import SpkverifError

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """A name -> builder map whose misses are user errors listing the choices.

    Every registry made is remembered in `Registry.instances`, so a test can check
    that each one is in `CATALOGUE` (and therefore in `--help` and `spkverif list`).
    """

    instances: typing.ClassVar[list[Registry]] = []

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, T] = {}
        Registry.instances.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register `builder` under `name`; ValueError (a bug) if the name is taken."""

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
        """The builder of `name`; SpkverifError naming the valid names if there is none."""
        try:
            return self._builders[name]
        except KeyError:
            raise SpkverifError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def describe(self, name: str) -> str:
        """One line about `name`: the first line (paragraph) of its builder's docstring ('' if it has none)."""
        return summary(self.get(name))

    def build(self, name: str, *args: Any, **params: Any) -> Any:
        """Call the builder, turning unknown options and values out of range into user errors."""
        builder = self.get(name)
        check_options(builder, params, f"{self.kind} {name!r}")
        return builder(*args, **params)


def summary(builder: Callable[..., Any]) -> str:
    """The first paragraph of a docstring on one line (usually its first line), or ''."""
    doc = (inspect.getdoc(builder) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


# valid values -------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Numeric bounds of an option, for `Annotated[float, Range(gt=0)]`; None means unbounded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` is out of range, or None if it is in range (None itself always passes)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"a number {self}"
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
            and not math.isnan(value)
        )
        return None if inside else str(self)

    def __str__(self) -> str:
        bounds = [(">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)]
        return ", ".join(f"{sign} {_number(bound)}" for sign, bound in bounds if bound is not None)


@dataclass(frozen=True)
class OneOf:
    """A string option whose value is one of a fixed set or a registry's names.

    `kind` names the choice in the error ("unknown aam preset 'huge'; choose one of:
    ..."); a registry's own kind is used when it is not given.
    """

    choices: Registry | Sequence[str]
    kind: str = ""

    def names(self) -> list[str]:
        return self.choices.names() if isinstance(self.choices, Registry) else list(self.choices)

    def problem(self, value: Any) -> str | None:
        """The whole error message for `value`, or None if it is one of the choices."""
        if value is None or value in self.names():
            return None
        kind = self.kind or (self.choices.kind if isinstance(self.choices, Registry) else "value")
        return f"unknown {kind} {value!r}; choose one of: {', '.join(self.names())}"

    def __str__(self) -> str:
        return ", ".join(self.names())


Constraint = Range | OneOf

Count = typing.Annotated[int, Range(ge=1)]
"""An option counting something (channels, dimensions, iterations): an int >= 1."""
NonNegative = typing.Annotated[float, Range(ge=0)]
"""A float >= 0 (a margin, a weight, a dither)."""
Positive = typing.Annotated[float, Range(gt=0)]
"""A float > 0 (a scale, a learning rate)."""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class BuilderOption:
    """One option of a builder: its name, type as text, default and valid values (None: any)."""

    name: str
    type: str
    default: Any
    valid: Constraint | None


def builder_options(builder: Callable[..., Any]) -> list[BuilderOption]:
    """The options of a builder, from its signature: the parameters that have defaults.

    Type annotations are resolved (`typing.get_type_hints`), so the constraints
    inside `Annotated[...]` are found even under `from __future__ import annotations`;
    a NameError there is a bug in the builder's module.
    """
    # A class registered as its own builder declares its options in `__init__`.
    hints = typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder, include_extras=True)
    options = []
    for name, parameter in inspect.signature(builder).parameters.items():
        if parameter.default is inspect.Parameter.empty or parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        hint, valid = _constraint(hints.get(name))
        options.append(BuilderOption(name, _type_text(hint), parameter.default, valid))
    return options


def _constraint(hint: Any) -> tuple[Any, Constraint | None]:
    """`Annotated[float, Range(gt=0)] | None` -> (float | None, Range(gt=0))."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, next((extra for extra in extras if isinstance(extra, (Range, OneOf))), None)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_constraint(arg) for arg in typing.get_args(hint)]
        valid = next((part[1] for part in parts if part[1] is not None), None)
        return functools.reduce(operator.or_, [part[0] for part in parts]), valid
    return hint, None


def _type_text(hint: Any) -> str:
    if hint is None:
        return ""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def check_options(builder: Callable[..., Any], params: dict[str, Any], what: str) -> None:
    """Reject options a builder does not take, naming the ones it does, and values out of their range."""
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
    for option in builder_options(builder):
        if option.name in params and option.valid is not None:
            problem = option.valid.problem(params[option.name])
            if problem is not None and isinstance(option.valid, OneOf):
                raise SpkverifError(problem)
            if problem is not None:
                raise SpkverifError(f"{what} needs {option.name} {problem}, not {params[option.name]!r}")
