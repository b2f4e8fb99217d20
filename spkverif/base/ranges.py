"""Valid ranges of the numeric options outside the registries, and their one check.

A range is the registry's `Range` (`spkverif.base.registry`: `ge`, `gt`, `le`, `lt`), so
one type states every bound in the project: component builders annotate their
options with it (`Annotated[float, Range(gt=0)]`, checked by `Registry.build`); a
training configuration field names its range in its metadata (`setting(default, help,
valid=AT_LEAST_ONE)`, read by `range_of` and checked by `check` when a file or `--set`
gives the value); the CLI turns the same ranges into Click types, so `--help` prints
each one (`[x>=1]`) and a flag outside it is refused before a stage starts.
"""

from __future__ import annotations

import math
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Range

POSITIVE = Range(gt=0)
AT_LEAST_ONE = Range(ge=1)
NOT_NEGATIVE = Range(ge=0)
PROBABILITY = Range(ge=0, le=1)
OPEN_PROBABILITY = Range(gt=0, lt=1)
COSINE = Range(ge=-1, le=1)


def at_least(bound: float) -> Range:
    return Range(ge=bound)


def lower(valid: Range) -> tuple[float | None, bool]:
    """(bound, open) of the lower side."""
    return (valid.gt, True) if valid.gt is not None else (valid.ge, False)


def upper(valid: Range) -> tuple[float | None, bool]:
    """(bound, open) of the upper side."""
    return (valid.lt, True) if valid.lt is not None else (valid.le, False)


def describe(valid: Range) -> str:
    """As Click writes ranges: `x>=1`, `0<x<1`, `0<=x<=1`."""
    (low, low_open), (high, high_open) = lower(valid), upper(valid)
    if high is None:
        return "any number" if low is None else f"x{'>' if low_open else '>='}{low:g}"
    bounded_above = f"x{'<' if high_open else '<='}{high:g}"
    return bounded_above if low is None else f"{low:g}{'<' if low_open else '<='}{bounded_above}"


def check(valid: Range, value: Any, name: str, path: Any = None) -> Any:
    """`value` unchanged, or `SpkverifError` naming the option and its range (NaN and inf are in none)."""
    finite = not (isinstance(value, float) and not math.isfinite(value))
    if not finite or valid.problem(value) is not None:
        raise SpkverifError(f"{name} must be {describe(valid)}, not {value!r}", path)
    return value


def range_of(kind: type, name: str) -> Range | None:
    """The range a dataclass field declares, or None; KeyError for a field it lacks."""
    for item in kind.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if item.name == name:
            return item.metadata.get("range")
    raise KeyError(name)
