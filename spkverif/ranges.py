"""The valid range of a numeric option, written once and used by every check of it.

A configuration field names its range in its metadata (`ranged(default, Range(1))`);
the CLI turns the same `Range` into a Click type, so `--help` prints it
(`[x>=1]`) and a flag out of range is refused before a stage starts, and a value
from a YAML file is checked against it when the file is read (`Range.check`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from spkverif.errors import SpkverifError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Range:
    """low <= x <= high (either bound None for none; `low_open`/`high_open` make it strict)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """As Click writes ranges: `x>=1`, `0<x<1`, `0<=x<=1`."""
        if self.high is None:
            return "any number" if self.low is None else f"x{'>' if self.low_open else '>='}{self.low:g}"
        upper = f"x{'<' if self.high_open else '<='}{self.high:g}"
        if self.low is None:
            return upper
        return f"{self.low:g}{'<' if self.low_open else '<='}{upper}"

    def check(self, value: Any, name: str, path: Any = None) -> Any:
        """`value` unchanged, or `SpkverifError` naming the option and its range."""
        if not self.contains(value):
            raise SpkverifError(f"{name} must be {self.describe()}, not {value!r}", path)
        return value


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
NOT_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1)
OPEN_PROBABILITY = Range(0, 1, low_open=True, high_open=True)


def counts(*names: str) -> dict[str, Range]:
    """Options that count something (channels, dimensions): each at least one."""
    return dict.fromkeys(names, AT_LEAST_ONE)


FBANK_RANGES = {"num_mel_bins": AT_LEAST_ONE, "dither": NOT_NEGATIVE, "sample_rate": AT_LEAST_ONE}
"""The Kaldi fbank front end's options that model builders take."""


def ranged(default: Any, valid: Range) -> Any:
    """A dataclass field with its default and its valid range (read by `range_of`)."""
    return field(default=default, metadata={"range": valid})


def range_of(kind: type, name: str) -> Range | None:
    """The range a dataclass field declares, or None."""
    for item in kind.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if item.name == name:
            return item.metadata.get("range")
    raise KeyError(name)


def checked(what: str, **valid: Range) -> Callable[[F], F]:
    """Decorate a registered builder: its numeric keyword options are checked against `valid` first,
    an option out of range being a `SpkverifError` naming `what` (e.g. "loss aam") and the option.

    `inspect.signature` sees through the wrapper, so the registry still lists the
    builder's own options; the ranges are kept as `builder.ranges` for help texts.
    """

    def decorate(builder: F) -> F:
        @functools.wraps(builder)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for name, value in kwargs.items():
                if name in valid and isinstance(value, int | float) and not isinstance(value, bool):
                    valid[name].check(value, f"{what} option {name}")
            return builder(*args, **kwargs)

        wrapper.ranges = valid  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
