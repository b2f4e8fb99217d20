"""Optimisers and learning-rate schedules, registered by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import NonNegative, Positive, Range, Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")


@OPTIMIZERS.register("sgd")
def build_sgd(
    parameters: Iterable[torch.nn.Parameter],
    lr: Positive = 0.01,
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9,
    weight_decay: NonNegative = 1e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Stochastic gradient descent with momentum (the paper's optimiser)."""
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


@OPTIMIZERS.register("adam")
def build_adam(
    parameters: Iterable[torch.nn.Parameter],
    lr: Positive = 0.001,
    weight_decay: NonNegative = 0.0,
    betas: tuple = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Adam (Kingma and Ba 2015), weight decay added to the gradient."""
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def build_adamw(
    parameters: Iterable[torch.nn.Parameter],
    lr: Positive = 0.001,
    weight_decay: NonNegative = 0.01,
    betas: tuple = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@SCHEDULERS.register("constant")
def build_constant(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's schedule: the optimiser's learning rate throughout."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("exponential")
def build_exponential(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    final_lr: Positive = 5e-5,
    warmup_epochs: NonNegative = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """WeSpeaker's schedule: linear warm-up, then exponential decay from the optimiser's
    learning rate to `final_lr` over the whole run (per step); a group with its own `lr_scale` decays
    by the same ratio."""
    initial = optimizer.defaults["lr"]
    if initial <= 0:
        raise SpkverifError(f"scheduler exponential needs a positive optimizer lr, not {initial}")
    ratio = final_lr / initial
    warmup = warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        decay = ratio ** (step / max(total_steps, 1))
        return decay * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULERS.register("onecycle")
def build_onecycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    pct_start: Annotated[float, Range(gt=0, lt=1)] = 0.3,
    div_factor: Positive = 25.0,
    final_div_factor: Positive = 1e4,
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle (Smith 2018): up to the optimiser's learning rate, then down, cosine-shaped."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=max(total_steps, 2),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=False,
    )
