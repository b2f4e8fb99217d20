"""Margin schedules: their values step by step, and their errors."""

from __future__ import annotations

import itertools
import math

import pytest

from spkverif.base.errors import SpkverifError
from spkverif.training.margin_schedules import MARGIN_SCHEDULERS, build_margin_schedule


def _values(name: str, **options: float) -> list[float]:
    schedule = MARGIN_SCHEDULERS.build(name, 0.2, 10, **options)  # final margin 0.2, 10 steps an epoch
    return [schedule(step) for step in range(0, 50, 5)]


def test_constant_is_the_final_margin_throughout() -> None:
    assert _values("constant") == [0.2] * 10


def test_linear_waits_then_rises_in_a_straight_line() -> None:
    values = _values("linear", warmup_epochs=1, ramp_epochs=2)  # steps 0, 5, ..., 45
    expected = [0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2]
    assert values == pytest.approx(expected)


def test_exponential_rises_fast_then_settles_on_the_final_margin() -> None:
    values = _values("exponential", warmup_epochs=1, ramp_epochs=2, rate=5.0)
    assert values[:3] == [0.0, 0.0, 0.0]
    assert values[3] == pytest.approx(0.2 * (1 - math.exp(-5 * 0.25)) / (1 - math.exp(-5)))
    assert values[6:] == pytest.approx([0.2] * 4)
    rises = [b - a for a, b in itertools.pairwise(values[2:7])]
    assert all(r > 0 for r in rises) and rises == sorted(rises, reverse=True)


def test_no_warmup_and_no_ramp_is_constant() -> None:
    assert _values("linear", warmup_epochs=0, ramp_epochs=0) == [0.2] * 10


def test_a_schedule_for_a_loss_without_margin_is_refused() -> None:
    assert build_margin_schedule("constant", {}, "softmax", None, 10) is None
    with pytest.raises(SpkverifError, match="loss 'softmax' has none"):
        build_margin_schedule("linear", {}, "softmax", None, 10)
    with pytest.raises(SpkverifError, match="unknown margin scheduler 'cosine'"):
        build_margin_schedule("cosine", {}, "aam", 0.2, 10)
    with pytest.raises(SpkverifError, match="warmup_epochs >= 0"):
        build_margin_schedule("linear", {"warmup_epochs": -1}, "aam", 0.2, 10)
    with pytest.raises(SpkverifError, match="has no option 'warmup'"):
        build_margin_schedule("linear", {"warmup": 1}, "aam", 0.2, 10)
