"""The AAM head against a hand computation and its edge cases."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spkverif.losses import build_loss


def test_aam_equals_a_hand_computation() -> None:
    head = build_loss("aam", 2, 2, {"margin": 0.2, "scale": 10.0})
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angle = 0.5
    embeddings = torch.tensor([[math.cos(angle), math.sin(angle)]])
    labels = torch.tensor([0])
    target = 10.0 * math.cos(angle + 0.2)
    other = 10.0 * math.cos(math.pi / 2 - angle)
    expected = -math.log(math.exp(target) / (math.exp(target) + math.exp(other)))
    assert abs(head(embeddings, labels).loss.item() - expected) < 1e-5


def test_aam_past_pi_keeps_decreasing_and_gradients_stay_finite() -> None:
    head = build_loss("aam", 2, 2, {"margin": 0.5, "scale": 10.0})
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    for angle in (0.0, math.pi - 0.1, math.pi):
        embeddings = torch.tensor([[math.cos(angle), math.sin(angle)]], requires_grad=True)
        loss = head(embeddings, torch.tensor([0])).loss
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_aam_with_zero_margin_is_scaled_cosine_softmax() -> None:
    torch.manual_seed(0)
    head = build_loss("aam", 8, 5, {"margin": 0.0, "scale": 7.0})
    embeddings, labels = torch.randn(6, 8), torch.randint(0, 5, (6,))
    logits = 7.0 * F.normalize(embeddings) @ F.normalize(head.weight).T
    torch.testing.assert_close(head(embeddings, labels).loss, F.cross_entropy(logits, labels))
