"""SADE's test-time aggregation: its objective against a longhand formula, and labels never read."""

import math

import pytest
import torch

from fbl.engine.test_time_aggregation import AggregationSettings, aggregation_agreement, learn_expert_weights
from fbl.errors import ConfigError
from fbl.models import create_model


def _longhand_agreement(a, b, raw):
    e = [math.exp(v) for v in raw.tolist()]
    w = [v / sum(e) for v in e]
    total = 0.0
    for i in range(a.shape[0]):
        za = [sum(w[k] * a[i, k, c].item() for k in range(len(w))) for c in range(a.shape[2])]
        zb = [sum(w[k] * b[i, k, c].item() for k in range(len(w))) for c in range(a.shape[2])]
        pa = [math.exp(v) / sum(math.exp(u) for u in za) for v in za]
        pb = [math.exp(v) / sum(math.exp(u) for u in zb) for v in zb]
        dot = sum(x * y for x, y in zip(pa, pb, strict=True))
        total += dot / (math.sqrt(sum(x * x for x in pa)) * math.sqrt(sum(y * y for y in pb)))
    return total / a.shape[0]


def test_the_objective_is_the_mean_cosine_of_the_aggregated_predictions_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(5, 3, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 3, 4, generator=g, dtype=torch.float64),
    )
    raw = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64, requires_grad=True)
    value = aggregation_agreement(a, b, raw)
    assert value.item() == pytest.approx(_longhand_agreement(a, b, raw.detach()), rel=1e-12)
    (grad,) = torch.autograd.grad(value, raw)
    for k in range(3):  # central differences of the longhand formula
        step = torch.zeros(3, dtype=torch.float64)
        step[k] = 1e-6
        numeric = (
            _longhand_agreement(a, b, raw.detach() + step) - _longhand_agreement(a, b, raw.detach() - step)
        ) / 2e-6
        assert grad[k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert torch.autograd.gradcheck(lambda r: aggregation_agreement(a, b, r), (raw,))


def _model_and_images():
    torch.manual_seed(0)
    model = create_model("digits-experts", num_classes=10)
    images = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 10
    return model, images, labels


SETTINGS = AggregationSettings(epochs=2, lr=0.5)


def test_labels_are_never_read_shuffled_or_missing_labels_give_identical_weights():
    model, images, labels = _model_and_images()
    with_labels = [(images[i : i + 8], labels[i : i + 8]) for i in range(0, 40, 8)]
    shuffled = labels[torch.randperm(40, generator=torch.Generator().manual_seed(2))]
    with_shuffled = [(images[i : i + 8], shuffled[i : i + 8]) for i in range(0, 40, 8)]
    images_only = [images[i : i + 8] for i in range(0, 40, 8)]
    poisoned = [(images[i : i + 8], None, "not labels") for i in range(0, 40, 8)]
    weights = [learn_expert_weights(model, batches, settings=SETTINGS) for batches in (with_labels, with_shuffled)]
    weights += [learn_expert_weights(model, batches, settings=SETTINGS) for batches in (images_only, poisoned)]
    for other in weights[1:]:
        assert torch.equal(weights[0], other)
    assert not torch.allclose(weights[0], torch.full((3,), 1 / 3))  # it learnt something
    assert weights[0].sum().item() == pytest.approx(1.0)
    assert torch.equal(model.expert_weights, weights[-1])  # the model now aggregates with them


def test_a_single_model_is_refused():
    with pytest.raises(ConfigError, match="multi-expert"):
        learn_expert_weights(create_model("digits-cnn", num_classes=10), [torch.zeros(2, 1, 8, 8)])
