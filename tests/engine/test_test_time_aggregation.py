"""SADE's test-time aggregation: its objective against a longhand formula, and labels never read."""

import math
from types import SimpleNamespace

import pytest
import torch

from fbl.data import AugmentSpec, build_dataset, random_crop_flip
from fbl.engine.distributed import Distributed
from fbl.engine.test_time_aggregation import (
    AggregationSettings,
    aggregate_under_priors,
    aggregation_agreement,
    learn_expert_weights,
    sade_view,
)
from fbl.errors import ConfigError
from fbl.label_shift import LabelPrior, subsample_counts, subsample_indices
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


SPEC = AugmentSpec(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), crop_padding=4, hflip=True)


def test_sade_view_on_rgb_images_is_a_normalised_colour_augmented_crop():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    view = sade_view(SPEC)
    a, b = view(images, torch.Generator().manual_seed(4)), view(images, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.shape == images.shape
    mean, std = torch.tensor(SPEC.mean).view(1, 3, 1, 1), torch.tensor(SPEC.std).view(1, 3, 1, 1)
    pixels = a * std + mean  # back to [0, 1]
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    plain = images.float() / 255
    changed = (pixels - plain).abs().flatten(1).amax(1) > 1e-3
    assert bool(changed.all())  # every image cropped, jittered, greyed or blurred (p of none: tiny)
    greyed = (pixels[:, 0] - pixels[:, 1]).abs().flatten(1).amax(1) < 1e-5
    assert 3 <= int(greyed.sum()) <= 25  # greyscale with p 0.2 of 64


def test_sade_view_on_grey_images_is_the_datasets_crop_and_flip():
    spec = AugmentSpec(mean=(0.5,), std=(0.25,), crop_padding=1, hflip=False)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    out = sade_view(spec)(images, torch.Generator().manual_seed(5))
    cropped = random_crop_flip(images, 1, False, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, (cropped.float() / 255 - 0.5) / 0.25, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def digits_experts():
    torch.manual_seed(0)
    data = build_dataset("digits-lt")
    model = create_model("digits-experts", num_classes=data.num_classes)  # random, distinct experts
    return SimpleNamespace(data=data, model=model.eval(), logit_scale=1.0, dist=Distributed())


FAST = AggregationSettings(epochs=1, lr=0.5)


def test_each_prior_is_scored_on_sades_subsampled_images_with_and_without_the_learnt_weights(digits_experts):
    trained = digits_experts
    images, labels = trained.data.eval_tensors("test")
    priors = (LabelPrior("forward", 10), LabelPrior("uniform"), LabelPrior("backward", 10))
    table = aggregate_under_priors(trained, "test", priors=priors, settings=FAST, batch_size=16)
    x = (images.float() / 255 - torch.tensor(trained.data.augment.mean).view(1, -1, 1, 1)) / torch.tensor(
        trained.data.augment.std
    ).view(1, -1, 1, 1)
    with torch.no_grad():
        experts = trained.model(x, return_features=True, return_experts=True)[2].logits
    per_class = int(torch.bincount(labels).min())
    for prior in priors:
        row = table[prior.name]
        keep = subsample_indices(labels.numpy(), subsample_counts(prior.weights(trained.data.class_counts), per_class))
        assert row["images"] == len(keep)
        mean_logits = experts[keep].mean(1)
        assert row["averaged"] == pytest.approx(100 * float((mean_logits.argmax(1) == labels[keep]).double().mean()))
        w = torch.tensor(row["weights"])
        mixed = sum(w[k] * experts[keep][:, k] for k in range(len(w)))
        assert row["aggregated"] == pytest.approx(100 * float((mixed.argmax(1) == labels[keep]).double().mean()))
        assert sum(row["weights"]) == pytest.approx(1.0)
    assert torch.equal(trained.model.expert_weights, torch.full((3,), 1 / 3))  # the model's weights restored


def test_test_agnostic_aggregation_refuses_a_single_model_and_torchrun(digits_experts):
    single = SimpleNamespace(**{**vars(digits_experts), "model": create_model("digits-cnn", num_classes=10)})
    with pytest.raises(ConfigError, match="needs a multi-expert run"):
        aggregate_under_priors(single)
    distributed = SimpleNamespace(**{**vars(digits_experts), "dist": Distributed(rank=0, world_size=2)})
    with pytest.raises(ConfigError, match="in one process"):
        aggregate_under_priors(distributed)
