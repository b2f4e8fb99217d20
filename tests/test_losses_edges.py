"""Hand-computed values on a two-class, four-sample example, and finite gradients at the edges."""

from __future__ import annotations

import math

import pytest
import torch

from spkverif.losses import LOSSES, build_loss
from spkverif.losses.base import CosineClassifier

# Two speakers, two unit-length samples each: cos(x0, x1) = cos(x2, x3) = 0.6, and across
# speakers cos(x0, x2) = 0, cos(x0, x3) = -0.8, cos(x1, x2) = 0.8, cos(x1, x3) = 0.
FOUR = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
TWO_CLASSES = torch.tensor([0, 0, 1, 1])
CROSS_COSINES = (0.0, -0.8, 0.8, 0.0)


def _cross_entropy(logits: list[float], label: int) -> float:
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def test_softmax_by_hand() -> None:
    head = build_loss("softmax", 2, 2)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(2))
        head.classifier.bias.copy_(torch.tensor([0.0, 0.5]))
    samples = zip(FOUR.tolist(), TWO_CLASSES.tolist(), strict=True)
    expected = sum(_cross_entropy([x, y + 0.5], label) for (x, y), label in samples) / 4
    assert head(FOUR, TWO_CLASSES).loss.item() == pytest.approx(expected, abs=1e-6)


def test_center_loss_and_wen_update_by_hand() -> None:
    head = build_loss("center", 2, 2, {"weight": 0.1, "center_lr": 0.5})
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(2))
        head.classifier.bias.zero_()
    samples = zip(FOUR.tolist(), TWO_CLASSES.tolist(), strict=True)
    softmax = sum(_cross_entropy([x, y], label) for (x, y), label in samples) / 4
    # Centres start at 0 and every sample has unit length: 1/2 mean ||x - 0||^2 = 1/2.
    assert head(FOUR, TWO_CLASSES).loss.item() == pytest.approx(softmax + 0.1 * 0.5, abs=1e-6)
    torch.testing.assert_close(head.centers, torch.zeros(2, 2))  # they move after the step, not during it
    head.finish_step(lambda tensor: tensor)
    # c_j -= 0.5 * sum_i (c_j - x_i) / (1 + 2): class 0 to (1.6, 0.8) / 6, class 1 to (-0.8, 1.6) / 6.
    expected_centers = torch.tensor([[1.6, 0.8], [-0.8, 1.6]]) / 6
    torch.testing.assert_close(head.centers, expected_centers)
    # The next pass measures against the moved centres, and evaluation moves nothing.
    head.eval()
    offsets = FOUR - expected_centers[TWO_CLASSES]
    center_term = 0.5 * offsets.pow(2).sum(dim=1).mean().item()
    assert head(FOUR, TWO_CLASSES).loss.item() == pytest.approx(softmax + 0.1 * center_term, abs=1e-6)
    head.finish_step(lambda tensor: tensor)
    torch.testing.assert_close(head.centers, expected_centers)


def test_center_update_covers_the_whole_step_and_skipped_steps_leave_no_trace() -> None:
    whole, split = (build_loss("center", 2, 2, {"center_lr": 0.5}) for _ in range(2))
    whole(FOUR, TWO_CLASSES)
    whole.finish_step(lambda tensor: tensor)
    split(FOUR[:3], TWO_CLASSES[:3])  # two micro-batches of one step (gradient accumulation)
    split(FOUR[3:], TWO_CLASSES[3:])
    split.finish_step(lambda tensor: tensor)
    torch.testing.assert_close(split.centers, whole.centers)
    whole(FOUR, torch.tensor([1, 1, 0, 0]))
    whole.abandon_step()
    whole.finish_step(lambda tensor: tensor)
    torch.testing.assert_close(whole.centers, split.centers)


def test_contrastive_squared_cosine_by_hand() -> None:
    head = build_loss("contrastive", 2, 2, {"distance": "cosine", "margin": 0.5})
    positives = (1 - 0.6) ** 2  # both positive pairs are at cosine distance 0.4
    negatives = sum(max(0.0, 0.5 - (1 - c)) ** 2 for c in CROSS_COSINES) / 4  # only x1-x2 (distance 0.2) counts
    assert head(FOUR, TWO_CLASSES).loss.item() == pytest.approx(positives + negatives, abs=1e-6)
    assert negatives == pytest.approx(0.09 / 4)


def test_contrastive_squared_euclidean_by_hand() -> None:
    head = build_loss("contrastive", 2, 2, {"distance": "euclidean", "margin": 1.0})
    positives = 2 - 2 * 0.6  # squared distance of unit vectors is 2 - 2 cos
    negatives = sum(max(0.0, 1.0 - math.sqrt(2 - 2 * c)) ** 2 for c in CROSS_COSINES) / 4
    assert head(FOUR, TWO_CLASSES).loss.item() == pytest.approx(positives + negatives, abs=1e-5)


@pytest.mark.parametrize(
    ("mining", "expected"),
    [
        # Cosine distances: positives 0.4; anchor x1's nearest negative x2 at 0.2, x2's is x1 at 0.2.
        ("batch-hard", (0.0 + (0.4 - 0.2 + 0.3) + (0.4 - 0.2 + 0.3) + 0.0) / 4),
        # Of the 8 triplets only (x1, x0, x2) and (x2, x3, x1) violate the margin; the mean runs over those.
        ("batch-all", (0.4 - 0.2 + 0.3) * 2 / 2),
        ("semi-hard", None),
    ],
)
def test_triplet_by_hand(mining: str, expected: float | None) -> None:
    head = build_loss("triplet", 2, 2, {"margin": 0.3, "mining": mining})
    loss = head(FOUR, TWO_CLASSES).loss.item()
    if expected is None:  # no negative lies in (0.4, 0.7]: no semi-hard triplet, no loss
        assert loss == 0.0
    else:
        assert loss == pytest.approx(expected, abs=1e-6)


CLASSIFICATION = ["softmax", "center", "coco", "aam", "am", "subcenter_aam"]


@pytest.mark.parametrize("name", CLASSIFICATION)
@pytest.mark.parametrize("where", ["theta=0", "theta=pi", "zero vector"])
def test_classification_gradients_are_finite_at_the_edges(name: str, where: str) -> None:
    head = build_loss(name, 2, 2, {"margin": 0.5} if name in ("aam", "am", "subcenter_aam") else {})
    if isinstance(head, CosineClassifier):  # class 0's centres along x, class 1's along y
        with torch.no_grad():
            head.weight.copy_(torch.eye(2).repeat_interleave(len(head.weight) // 2, dim=0))
    base = torch.tensor([1.0, 0.0])
    point = {"theta=0": base, "theta=pi": -base, "zero vector": torch.zeros(2)}[where]
    embeddings = point.repeat(3, 1).requires_grad_(True)
    loss = head(embeddings, torch.tensor([0, 0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(embeddings.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize(
    "options",
    [
        {"name": "contrastive", "distance": "cosine"},
        {"name": "contrastive", "distance": "euclidean"},
        {"name": "contrastive", "distance": "euclidean", "squared": False},
        {"name": "triplet", "distance": "euclidean", "mining": "batch-all"},
        {"name": "triplet", "distance": "euclidean", "mining": "batch-hard"},
        {"name": "triplet", "distance": "cosine", "mining": "semi-hard"},
    ],
)
@pytest.mark.parametrize("where", ["identical", "zero vectors", "antipodal"])
def test_pair_gradients_are_finite_at_the_edges(options: dict, where: str) -> None:
    options = dict(options)
    head = build_loss(options.pop("name"), 2, 2, options)
    unit = torch.tensor([0.6, 0.8])
    points = {
        "identical": unit.repeat(4, 1),
        "zero vectors": torch.zeros(4, 2),
        "antipodal": torch.stack([unit, -unit, unit, -unit]),
    }[where]
    embeddings = points.clone().requires_grad_(True)
    loss = head(embeddings, TWO_CLASSES).loss
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_every_registered_loss_is_covered() -> None:
    assert set(LOSSES.names()) == {*CLASSIFICATION, "contrastive", "triplet"}
