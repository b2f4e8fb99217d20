"""Margin-based classification losses on normalised embeddings and class centres.

Each is cross-entropy on scale * cos(theta_k) for the other classes and
scale * psi(theta_y) for the true class, where psi adds the margin:

  aam            psi = cos(theta + m)          ArcFace (Deng et al. 2019)
  am             psi = cos(theta) - m          CosFace / AM-softmax (Wang et al. 2018)
  subcenter_aam  aam, with theta to the nearest of K centres of a class (Deng et al. 2020)

The margin can be driven by a margin scheduler (spkverif.training.margin_schedules)
through `set_margin`; `final_margin` is the value it rises to.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, NonNegative, OneOf, Positive
from spkverif.losses.base import LOSSES, CosineClassifier, LossHead, LossOutput


class MarginClassifier(CosineClassifier):
    """Cosine classifier whose true-class logit gets a margin; K centres a class if asked."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float, scale: float, centers_per_class: int = 1):
        if scale <= 0 or margin < 0:
            raise SpkverifError(f"a margin loss needs scale > 0 and margin >= 0 (got scale {scale}, margin {margin})")
        if centers_per_class < 1:
            raise SpkverifError(f"centers_per_class must be at least 1, not {centers_per_class}")
        super().__init__(embedding_dim, num_classes * centers_per_class)
        self.num_classes = num_classes
        self.centers_per_class = centers_per_class
        self.scale = scale
        self.margin = margin
        self._final_margin = margin

    @property
    def final_margin(self) -> float:
        return self._final_margin

    def set_margin(self, margin: float) -> None:
        self.margin = margin

    def class_cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, classes): the cosine to each class, its nearest centre's when it has several."""
        cosine = self.cosine(embeddings)
        if self.centers_per_class == 1:
            return cosine
        return cosine.view(len(cosine), self.num_classes, self.centers_per_class).amax(dim=2)

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cosine = self.class_cosine(embeddings)
        target = self.target_logit(cosine.gather(1, labels[:, None]))
        logits = cosine.scatter(1, labels[:, None], target) * self.scale
        return LossOutput(F.cross_entropy(logits, labels), cosine * self.scale)


class AdditiveAngularMargin(MarginClassifier):
    """ArcFace: cos(theta + m) for the true class.

    Where theta + m would pass pi the target logit would rise again, so past that
    point it continues as cos(theta) - m sin(m), which keeps decreasing (the usual fix).
    sin(theta) is computed as sqrt(max(1 - cos^2, 1e-7)), so the gradient stays finite
    at theta = 0 and theta = pi, where arccos has none.
    """

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:
        sine = (1.0 - target_cosine.pow(2)).clamp_min(1e-7).sqrt()
        with_margin = target_cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        fallback = target_cosine - self.margin * math.sin(self.margin)
        return torch.where(target_cosine > math.cos(math.pi - self.margin), with_margin, fallback)


class AdditiveMargin(MarginClassifier):
    """CosFace / AM-softmax: cos(theta) - m for the true class."""

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:
        return target_cosine - self.margin


AAM_PRESETS: dict[str, tuple[float, float]] = {"paper": (0.05, 10.0), "modern": (0.2, 32.0)}


@LOSSES.register("aam")
def build_aam(
    embedding_dim: int,
    num_classes: int,
    margin: NonNegative | None = None,
    scale: Positive | None = None,
    preset: Annotated[str, OneOf(AAM_PRESETS, "aam preset")] = "paper",
) -> LossHead:
    """Additive angular margin (ArcFace).

    `preset` picks margin and scale together: "paper" (m = 0.05, s = 10, Coria et
    al. 2020) or "modern" (m = 0.2, s = 32, as WeSpeaker and most VoxCeleb recipes
    since); an explicit `margin` or `scale` overrides the preset's.
    """
    preset_margin, preset_scale = AAM_PRESETS[preset]
    return AdditiveAngularMargin(
        embedding_dim,
        num_classes,
        preset_margin if margin is None else margin,
        preset_scale if scale is None else scale,
    )


@LOSSES.register("am")
def build_am(embedding_dim: int, num_classes: int, margin: NonNegative = 0.2, scale: Positive = 32.0) -> LossHead:
    """Additive margin softmax (CosFace); m = 0.2, s = 32 as in WeSpeaker's VoxCeleb recipes."""
    return AdditiveMargin(embedding_dim, num_classes, margin, scale)


@LOSSES.register("subcenter_aam")
def build_subcenter_aam(
    embedding_dim: int,
    num_classes: int,
    margin: NonNegative = 0.2,
    scale: Positive = 32.0,
    centers_per_class: Count = 3,
) -> LossHead:
    """Sub-center ArcFace: K = `centers_per_class` centres a class (3, as Deng et al. 2020), for noisy labels."""
    return AdditiveAngularMargin(embedding_dim, num_classes, margin, scale, centers_per_class)
