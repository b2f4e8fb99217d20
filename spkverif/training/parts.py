"""The trained network's named parts: frozen for a run's first steps, each at its own learning rate.

A part is `frontend` or `encoder` (the embedding model's two halves) or `head` (the loss
head), or a module or parameter below one of them by its dotted path as
`torch.nn.Module.named_parameters` spells it below the part (`encoder.pooling`,
`frontend.upstream`, `frontend.layer_weights`). `training.freeze` ({part: steps}) and
`training.lr_scale` ({part: factor}) name them; a parameter takes the setting of the
longest name that covers it, so `{encoder: 100, encoder.pooling: 0}` trains the pooling
from the start and the rest of the encoder after 100 steps.

A frozen part runs as at inference (`eval()`: BatchNorm statistics held, no dropout) and
its parameters are not stepped. In one process they also stop asking for gradients
(`requires_grad`), which spares their backward pass; under DDP, whose reducer expects
every parameter's gradient, their gradients are computed and dropped before the
optimiser's step. A parameter its module built frozen (a self-supervised front end's
frozen transformer) stays frozen after its part's steps end. A head's state that is not
learned by gradient (the center loss's centres, `LossHead.finish_step`) moves all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from spkverif.base.errors import SpkverifError

logger = logging.getLogger(__name__)


def network_parts(model: nn.Module, head: nn.Module) -> dict[str, nn.Module]:
    """The parts by name, for a `SpeakerEmbeddingModel` and a `LossHead`: frontend, encoder, head."""
    return {"frontend": model.frontend, "encoder": model.encoder, "head": head}


def find_part(parts: Mapping[str, nn.Module], name: str, setting: str) -> tuple[nn.Module | None, list[nn.Parameter]]:
    """The module `name` stands for (None for a single parameter) and its parameters.

    Raises `SpkverifError`, `SETTING: the model has no part 'NAME'; its parts are ...`, naming the
    top-level parts, or for a dotted path the modules and parameters directly below its part.
    """
    top, _, below = name.partition(".")
    if top not in parts:
        raise SpkverifError(f"{setting}: the model has no part {name!r}; its parts are {', '.join(parts)}")
    module = parts[top]
    if not below:
        return module, list(module.parameters())
    try:
        found = module.get_submodule(below)
        return found, list(found.parameters())
    except AttributeError:
        pass
    try:
        return None, [module.get_parameter(below)]
    except AttributeError:
        children = [f"{top}.{child}" for child, _ in module.named_children()]
        children += [f"{top}.{child}" for child, _ in module.named_parameters(recurse=False)]
        raise SpkverifError(
            f"{setting}: the model has no part {name!r}; {top}'s parts are {', '.join(children) or 'none'}"
        ) from None


def _by_depth(settings: Mapping[str, Any]) -> list[str]:
    """Names shallowest first, so a longer name's setting is applied after (and over) its part's."""
    return sorted(settings, key=lambda name: name.count("."))


def assign(parts: Mapping[str, nn.Module], settings: Mapping[str, Any], setting: str) -> dict[int, tuple[str, Any]]:
    """{id(parameter): (name, value)} for each parameter a name in `settings` covers, the longest name
    winning. Raises `SpkverifError` for a name the model lacks (`find_part`)."""
    chosen: dict[int, tuple[str, Any]] = {}
    for name in _by_depth(settings):
        for parameter in find_part(parts, name, setting)[1]:
            chosen[id(parameter)] = (name, settings[name])
    return chosen


def parameter_groups(
    network: nn.Module, parts: Mapping[str, nn.Module], scales: Mapping[str, float]
) -> list[nn.Parameter] | list[dict[str, Any]]:
    """`network`'s parameters for an optimiser: a plain list without `scales` (`training.lr_scale`);
    with them, one group per factor, each marked `lr_scale` (the factor) and `parts` (the names
    given it), the unscaled group first. `scale_learning_rates` applies the factors once the
    optimiser is built."""
    if not scales:
        return list(network.parameters())
    chosen = assign(parts, scales, "training.lr_scale")
    groups: dict[float, dict[str, Any]] = {1.0: {"params": [], "lr_scale": 1.0, "parts": []}}
    for parameter in network.parameters():
        name, scale = chosen.get(id(parameter), ("", 1.0))
        group = groups.setdefault(float(scale), {"params": [], "lr_scale": float(scale), "parts": []})
        group["params"].append(parameter)
        if name and name not in group["parts"]:
            group["parts"].append(name)
    return [group for group in groups.values() if group["params"]]


def scale_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """Multiply each parameter group's learning rate by its `lr_scale`; call before building the schedule,
    which then scales every group's rate alike (LambdaLR and OneCycleLR keep a rate per group)."""
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_scale", 1.0)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's learning rate now, before any part's `lr_scale` (what the training log shows)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


class PartFreezer:
    """Holds the parts of `training.freeze` ({name: steps}) frozen while the global step is below their steps.

    `before_step(step)` sets each named part's mode and (with `toggle_grad`, one process) its
    parameters' `requires_grad` for the coming step; `after_backward()` drops the gradients of the
    parameters frozen now, before the optimiser steps. Raises `SpkverifError` for a name the model
    lacks (`find_part`). Without names both do nothing.
    """

    def __init__(self, parts: Mapping[str, nn.Module], freeze: Mapping[str, int], toggle_grad: bool):
        self.steps = dict(freeze)
        self.modules = [(name, find_part(parts, name, "training.freeze")[0]) for name in _by_depth(freeze)]
        chosen = assign(parts, freeze, "training.freeze")
        every = {id(p): p for module in parts.values() for p in module.parameters()}
        # (parameter, its part's name, whether it learns when not frozen: as its module built it)
        self.parameters = [(every[key], name, every[key].requires_grad) for key, (name, _) in chosen.items()]
        self.toggle_grad = toggle_grad
        self.frozen: list[nn.Parameter] = []
        self.held: set[str] = set()
        if self.steps:
            logger.info("frozen for the first steps: %s", ", ".join(f"{n} {s}" for n, s in self.steps.items()))

    def before_step(self, step: int) -> None:
        """Freeze or release each named part for global step `step` (counted from 0)."""
        if not self.steps:
            return
        held = {name for name, steps in self.steps.items() if step < steps}
        for name in sorted(self.held - held):
            logger.info("%s learns from step %d on", name, step)
        self.held = held
        for name, module in self.modules:
            if module is not None:
                module.train(name not in held)
        self.frozen = []
        for parameter, name, learns in self.parameters:
            if name in held:
                self.frozen.append(parameter)
            if self.toggle_grad:
                parameter.requires_grad_(learns and name not in held)

    def after_backward(self) -> None:
        """Drop the frozen parameters' gradients (computed under DDP), so no optimiser moves them."""
        for parameter in self.frozen:
            parameter.grad = None
