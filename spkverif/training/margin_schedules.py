"""Margin schedules: margin 0 for the first epochs, then rising to the loss's final margin.

A margin loss (aam, am, subcenter_aam) trained with its full margin from a random
start can stall, since at first no class is separated well enough for the margin
to be met; starting without one and raising it is the usual cure (WeSpeaker,
3D-Speaker). A schedule is a pure function of the global step, so a resumed run
sees exactly the margins an uninterrupted one would, with no state to save.

With `warmup_epochs` W and `ramp_epochs` R, progress p runs from 0 at the end of
epoch W to 1 at the end of epoch W + R, and the margin is final_margin * f(p):

  constant     f = 1 from the first step (the default: no scheduling at all)
  linear       f(p) = p
  exponential  f(p) = (1 - exp(-rate p)) / (1 - exp(-rate)): quick at first, then
               closing in on the final margin, reached exactly at p = 1
"""

from __future__ import annotations

import math
from collections.abc import Callable

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import NonNegative, Positive, Registry

MarginSchedule = Callable[[int], float]
MARGIN_SCHEDULERS: Registry = Registry("margin scheduler")


def _progress(step: int, steps_per_epoch: int, warmup_epochs: float, ramp_epochs: float) -> float:
    start = warmup_epochs * steps_per_epoch
    length = ramp_epochs * steps_per_epoch
    if step < start:
        return 0.0
    if length <= 0:
        return 1.0
    return min(1.0, (step - start) / length)


@MARGIN_SCHEDULERS.register("constant")
def build_constant(final_margin: float, steps_per_epoch: int) -> MarginSchedule:
    """The loss's own margin throughout."""
    return lambda step: final_margin


@MARGIN_SCHEDULERS.register("linear")
def build_linear(
    final_margin: float, steps_per_epoch: int, warmup_epochs: NonNegative = 1.0, ramp_epochs: NonNegative = 1.0
) -> MarginSchedule:
    """Margin 0 for `warmup_epochs`, then a straight line to the final margin over `ramp_epochs`."""
    return lambda step: final_margin * _progress(step, steps_per_epoch, warmup_epochs, ramp_epochs)


@MARGIN_SCHEDULERS.register("exponential")
def build_exponential(
    final_margin: float,
    steps_per_epoch: int,
    warmup_epochs: NonNegative = 1.0,
    ramp_epochs: NonNegative = 1.0,
    rate: Positive = 5.0,
) -> MarginSchedule:
    """Margin 0 for `warmup_epochs`, then 1 - exp(-rate p), scaled to reach the final margin after `ramp_epochs`."""
    norm = 1.0 - math.exp(-rate)

    def schedule(step: int) -> float:
        progress = _progress(step, steps_per_epoch, warmup_epochs, ramp_epochs)
        return final_margin * (1.0 - math.exp(-rate * progress)) / norm

    return schedule


def build_margin_schedule(
    name: str, options: dict, loss_name: str, final_margin: float | None, steps_per_epoch: int
) -> MarginSchedule | None:
    """The schedule for a loss, or None for a loss without a margin (where only `constant` is allowed)."""
    MARGIN_SCHEDULERS.get(name)
    if final_margin is None:
        if name != "constant":
            raise SpkverifError(
                f"margin_scheduler {name!r} drives a margin, but loss {loss_name!r} has none; "
                "use it with aam, am or subcenter_aam"
            )
        return None
    return MARGIN_SCHEDULERS.build(name, final_margin, steps_per_epoch, **options)
