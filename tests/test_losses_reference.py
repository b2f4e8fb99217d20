"""Each loss against pytorch-metric-learning (PML), an independent implementation, on fixed inputs.

Conventions that differ, and how each test bridges them:
- PML's ArcFace and sub-center ArcFace take the angular margin in degrees; ours in radians.
- PML keeps its class matrix as (D, C), ours as (C, D): the test copies ours, transposed.
- PML's NormalizedSoftmaxLoss has a temperature; our coco has scale = 1 / temperature.
- PML's contrastive loss is the hinge (power 1) form, ours with `squared: false`; with
  CosineSimilarity, a similarity, PML's pos_margin 1 and neg_margin 1 - m are our cosine
  distance margins 0 and m. PML averages each pair type over its non-zero terms by
  default; we average over all pairs of a type, so the tests use PML's MeanReducer. PML
  counts (i, j) and (j, i); we count each pair once, which leaves means unchanged.
- Batch-hard and semi-hard: our averages run over anchors / chosen triplets, zero
  losses included, so PML's loss gets MeanReducer; batch-all averages over non-zero
  triplets, PML's default AvgNonZeroReducer.
"""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.reducers import MeanReducer

from spkverif.losses import build_loss

DIM, CLASSES = 8, 5


def _batch(speakers: int = 3, per_speaker: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(speakers, DIM, generator=generator)
    labels = torch.arange(speakers).repeat_interleave(per_speaker)
    embeddings = centres[labels] + 0.8 * torch.randn(len(labels), DIM, generator=generator)
    return embeddings, labels


def _classification_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(10, DIM, generator=generator), torch.randint(0, CLASSES, (10,), generator=generator)


def _with_our_weights(reference: torch.nn.Module, head: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        reference.W.copy_(head.weight.T)
    return reference


@pytest.mark.parametrize("margin", [0.05, 0.2, 0.5, 2.0])
def test_aam_equals_pml_arcface(margin: float) -> None:
    head = build_loss("aam", DIM, CLASSES, {"margin": margin, "scale": 10.0})
    reference = _with_our_weights(pml_losses.ArcFaceLoss(CLASSES, DIM, margin=math.degrees(margin), scale=10.0), head)
    embeddings, labels = _classification_batch()
    torch.testing.assert_close(head(embeddings, labels).loss, reference(embeddings, labels), rtol=1e-5, atol=1e-5)


def test_aam_presets() -> None:
    assert (build_loss("aam", DIM, CLASSES).margin, build_loss("aam", DIM, CLASSES).scale) == (0.05, 10.0)
    modern = build_loss("aam", DIM, CLASSES, {"preset": "modern"})
    assert (modern.margin, modern.scale) == (0.2, 32.0)
    assert build_loss("aam", DIM, CLASSES, {"preset": "modern", "margin": 0.3}).margin == 0.3


def test_am_equals_pml_cosface() -> None:
    head = build_loss("am", DIM, CLASSES, {"margin": 0.35, "scale": 30.0})
    reference = _with_our_weights(pml_losses.CosFaceLoss(CLASSES, DIM, margin=0.35, scale=30.0), head)
    embeddings, labels = _classification_batch()
    torch.testing.assert_close(head(embeddings, labels).loss, reference(embeddings, labels), rtol=1e-5, atol=1e-5)


def test_subcenter_aam_equals_pml_subcenter_arcface() -> None:
    head = build_loss("subcenter_aam", DIM, CLASSES, {"margin": 0.2, "scale": 32.0, "centers_per_class": 3})
    assert head.weight.shape == (CLASSES * 3, DIM)
    reference = pml_losses.SubCenterArcFaceLoss(
        num_classes=CLASSES, embedding_size=DIM, margin=math.degrees(0.2), scale=32.0, sub_centers=3
    )
    _with_our_weights(reference, head)
    embeddings, labels = _classification_batch()
    torch.testing.assert_close(head(embeddings, labels).loss, reference(embeddings, labels), rtol=1e-5, atol=1e-5)


def test_coco_equals_pml_normalized_softmax() -> None:
    head = build_loss("coco", DIM, CLASSES, {"scale": 8.0})
    reference = _with_our_weights(pml_losses.NormalizedSoftmaxLoss(CLASSES, DIM, temperature=1 / 8.0), head)
    embeddings, labels = _classification_batch()
    torch.testing.assert_close(head(embeddings, labels).loss, reference(embeddings, labels), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("distance", "reference"),
    [
        ("cosine", pml_losses.ContrastiveLoss(1.0, 1.0 - 0.6, distance=CosineSimilarity(), reducer=MeanReducer())),
        ("euclidean", pml_losses.ContrastiveLoss(0.0, 0.6, distance=LpDistance(), reducer=MeanReducer())),
    ],
)
def test_contrastive_hinge_equals_pml(distance: str, reference: torch.nn.Module) -> None:
    head = build_loss("contrastive", DIM, CLASSES, {"distance": distance, "margin": 0.6, "squared": False})
    embeddings, labels = _batch()
    torch.testing.assert_close(head(embeddings, labels).loss, reference(embeddings, labels), rtol=1e-5, atol=1e-5)


def _pml_triplet(mining: str, distance: str, margin: float):
    """PML's triplet loss and the miner that picks the triplets ours does (None: all triplets)."""
    pml_distance = CosineSimilarity() if distance == "cosine" else LpDistance()
    if mining == "batch-all":
        return pml_losses.TripletMarginLoss(margin=margin, distance=pml_distance), None
    miner = (
        pml_miners.BatchHardMiner(distance=pml_distance)
        if mining == "batch-hard"
        else pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=pml_distance)
    )
    return pml_losses.TripletMarginLoss(margin=margin, distance=pml_distance, reducer=MeanReducer()), miner


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("mining", ["batch-all", "batch-hard", "semi-hard"])
def test_triplet_equals_pml_with_the_matching_miner(mining: str, distance: str) -> None:
    head = build_loss("triplet", DIM, CLASSES, {"margin": 0.3, "mining": mining, "distance": distance})
    reference, miner = _pml_triplet(mining, distance, 0.3)
    embeddings, labels = _batch()
    mined = miner(embeddings, labels) if miner is not None else None
    if mined is not None:
        assert len(mined[0]) > 0
    expected = reference(embeddings, labels, mined)
    assert expected > 0
    torch.testing.assert_close(head(embeddings, labels).loss, expected, rtol=1e-5, atol=1e-5)
