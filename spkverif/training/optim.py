"""Optimisers and learning-rate schedules, registered by name."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from spkverif.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")


@OPTIMIZERS.register("sgd")
def build_sgd(
    parameters: Iterable[torch.nn.Parameter],
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


@OPTIMIZERS.register("adam")
def build_adam(
    parameters: Iterable[torch.nn.Parameter], lr: float = 0.001, weight_decay: float = 0.0, betas: tuple = (0.9, 0.999)
) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def build_adamw(
    parameters: Iterable[torch.nn.Parameter], lr: float = 0.001, weight_decay: float = 0.01, betas: tuple = (0.9, 0.999)
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@SCHEDULERS.register("constant")
def build_constant(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's schedule: the optimiser's learning rate throughout."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
