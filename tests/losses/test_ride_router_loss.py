"""RIDE's router loss against its targets and binary cross-entropy written out longhand."""

import math

import pytest
import torch

from fbl.losses import build_loss
from fbl.models.expert_router import RoutedOutputs
from fbl.models.multi_expert_resnet import ExpertOutputs

COUNTS = [30, 10, 5, 2]


def _longhand(logits, router_logits, target, pos_weight, weight=None):
    n, k, _ = logits.shape
    total, norm = 0.0, 0.0
    for s in range(n):
        correct = []
        for j in range(k):
            mean = [sum(float(logits[s, e, c]) for e in range(j + 1)) / (j + 1) for c in range(logits.shape[2])]
            correct.append(max(range(len(mean)), key=mean.__getitem__) == int(target[s]))
        terms = []
        for i in range(k - 1):
            t = 1.0 if (not correct[i]) and any(correct[i + 1 :]) else 0.0
            p = 1 / (1 + math.exp(-float(router_logits[s, i])))
            terms.append(-(pos_weight * t * math.log(p) + (1 - t) * math.log(1 - p)))
        w = 1.0 if weight is None else float(weight[int(target[s])])
        total, norm = total + w * sum(terms) / len(terms), norm + w
    return total / norm


def _outputs(n=40, k=3):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(n, k, 4, generator=g, dtype=torch.float64) * 3
    router = torch.randn(n, k - 1, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (n,), generator=g)
    return RoutedOutputs(logits, torch.zeros(n, k, 2, dtype=torch.float64), router), target


@pytest.mark.parametrize("pos_weight", [100.0, 1.0])
def test_router_loss_is_rides(pos_weight):
    outputs, target = _outputs()
    loss = build_loss("ride-router", COUNTS, options={"pos_weight": pos_weight})
    value = loss(outputs.logits.mean(1), target, experts=outputs)
    assert value.item() == pytest.approx(_longhand(outputs.logits, outputs.router_logits.detach(), target, pos_weight))
    value.backward()
    assert outputs.router_logits.grad is not None and outputs.router_logits.grad.abs().sum() > 0


def test_a_class_weight_weights_each_image_by_its_class():
    outputs, target = _outputs()
    loss = build_loss("ride-router", COUNTS)
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0])
    loss.set_weight(weight)
    value = loss(outputs.logits.mean(1), target, experts=outputs)
    assert value.item() == pytest.approx(
        _longhand(outputs.logits, outputs.router_logits.detach(), target, 100.0, weight)
    )


def test_outputs_without_routers_are_refused():
    outputs, target = _outputs()
    loss = build_loss("ride-router", COUNTS)
    with pytest.raises(ValueError, match="--decoupled router"):
        loss(outputs.logits.mean(1), target, experts=ExpertOutputs(outputs.logits, outputs.features))
