r"""SADE's test-time self-supervised aggregation (Zhang et al., NeurIPS 2022).

A multi-expert model whose experts fit different test priors (SADE's forward-long-tailed, uniform
and backward-long-tailed experts; the FBL experts' weak to strong stimuli) is adapted to an unknown
test prior by learning its aggregation weights on the unlabelled test images. With raw weights
:math:`\omega` and :math:`w = \mathrm{softmax}(\omega)`, the prediction on an image is
:math:`p = \mathrm{softmax}(\sum_k w_k z_k)`; the weights maximise the agreement of the predictions
on two random views :math:`x', x''` of each image,

.. math:: \max_\omega\ \frac1N \sum_i \cos\big(p(x'_i), p(x''_i)\big),

which favours the experts that are stable under augmentation — those whose skill matches the test
prior. The backbone and heads stay frozen (eval mode); only :math:`\omega` learns, by SGD as in SADE's
CIFAR code (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, 5 epochs, stopping early once a
weight falls below 0.05). **Labels are never read**: a batch may be images alone or ``(images, ...)``,
of which only the first item is used (a test feeds shuffled and missing labels and gets the same
weights).

The views here are the dataset's train-time crop (padding 4) and flip, applied to the normalised
test images: the zero padding is then the mean colour rather than black, and SADE's colour jitter,
greyscale and blur are not used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fbl.data.augment import random_crop_flip
from fbl.engine.distributed import Distributed
from fbl.engine.execution import Execution
from fbl.engine.expert_metrics import multi_expert_model
from fbl.errors import ConfigError

View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def crop_flip_view(padding: int = 4, hflip: bool = True) -> View:
    """A random view: per-image crop of the ``padding``-padded image and horizontal flip."""
    return lambda images, generator: random_crop_flip(images, padding, hflip, generator)


def aggregation_agreement(
    view_a: torch.Tensor, view_b: torch.Tensor, raw_weights: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""SADE's objective: :math:`\cos(p_a, p_b)`, :math:`p = \mathrm{softmax}(\sum_k \mathrm{softmax}(\omega)_k z_k)`.

    Args:
        view_a, view_b: the experts' logits on two views of the same images, (N, K, C).
        raw_weights: :math:`\omega`, (K,).
        reduction: ``"mean"`` over the images or ``"sum"``.
    """
    w = raw_weights.softmax(dim=0)
    p_a = torch.einsum("nkc,k->nc", view_a, w).softmax(dim=1)
    p_b = torch.einsum("nkc,k->nc", view_b, w).softmax(dim=1)
    agreement = F.cosine_similarity(p_a, p_b, dim=1, eps=1e-6)
    return agreement.sum() if reduction == "sum" else agreement.mean()


@dataclass(frozen=True)
class AggregationSettings:
    """SADE's CIFAR settings of the test-time optimisation."""

    epochs: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    min_weight: float = 0.05
    seed: int = 0


def _images_of(batch) -> torch.Tensor:
    # Only the images: whatever follows them in a batch (labels) is not looked at.
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _expert_logits(model, images, execution: Execution, logit_scale: float) -> torch.Tensor:
    with torch.no_grad(), execution.autocast():
        experts = model(images, return_features=True, return_experts=True)[2]
    return experts.logits.float() * logit_scale


def learn_expert_weights(
    model: torch.nn.Module,
    batches: Iterable,
    *,
    view: View | None = None,
    execution: Execution | None = None,
    dist: Distributed | None = None,
    logit_scale: float = 1.0,
    settings: AggregationSettings = AggregationSettings(),
) -> torch.Tensor:
    """Learn the aggregation weights of ``model``'s experts on unlabelled ``batches`` and set them.

    Returns the weights (K, summing to 1; on the CPU), which are also written to the model's
    ``expert_weights``, so that every evaluation after this uses them. Under ``torchrun`` every rank
    passes its share of the images; each step's gradient is that of the mean over all ranks' images.

    Args:
        model: a multi-expert model (or what the loops call: DDP / compiled around one).
        batches: images, or ``(images, ...)`` tuples whose other items are ignored.
        view: the random augmentation making each view (default :func:`crop_flip_view`).
        logit_scale: the trained loss's :attr:`~fbl.losses.base.LongTailLoss.logit_scale` (cosine heads: 30).
    """
    experts_model = multi_expert_model(model)
    if experts_model is None:
        raise ConfigError("Test-time aggregation needs a multi-expert model (e.g. --arch resnet32-sade)")
    view = view or crop_flip_view()
    execution = execution or Execution(next(model.parameters()).device)
    model.eval()
    k = experts_model.num_experts
    raw = torch.full((k,), 1.0 / k, device=execution.device, requires_grad=True)
    optimizer = torch.optim.SGD(
        [raw], lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay, nesterov=True
    )
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in range(settings.epochs):
        for batch in _aligned(batches, dist):
            optimizer.zero_grad(set_to_none=False)
            _mean_gradient(model, raw, batch, view, generator, execution, logit_scale, dist)
            optimizer.step()
        if bool((raw.detach().softmax(dim=0) < settings.min_weight).any()):
            break
    weights = raw.detach().softmax(dim=0)
    experts_model.set_expert_weights(weights)
    return weights.cpu()


def _aligned(batches: Iterable, dist: Distributed | None):
    """The batches, padded with ``None`` to the most any rank has: every rank takes every step together."""
    if dist is None or not dist.enabled:
        yield from batches
        return
    counts = torch.zeros(dist.world_size, dtype=torch.long)
    counts[dist.rank] = len(batches)
    dist.all_reduce_sum(counts)
    iterator = iter(batches)
    for _ in range(int(counts.max())):
        yield next(iterator, None)


def _mean_gradient(model, raw, batch, view, generator, execution, logit_scale, dist) -> None:
    """``raw.grad`` = the gradient of minus the mean agreement over this step's images on every rank."""
    if batch is None:
        objective, count = raw.sum() * 0.0, 0
    else:
        images = _images_of(batch).to(execution.device)
        view_a = _expert_logits(model, view(images, generator), execution, logit_scale)
        view_b = _expert_logits(model, view(images, generator), execution, logit_scale)
        objective, count = -aggregation_agreement(view_a, view_b, raw, reduction="sum"), images.shape[0]
    objective.backward()
    totals = torch.cat([raw.grad.detach().double().cpu(), torch.tensor([float(count)], dtype=torch.float64)])
    if dist is not None and dist.enabled:
        dist.all_reduce_sum(totals)
    raw.grad.copy_((totals[:-1] / totals[-1].clamp_min(1.0)).to(raw.grad))


def aggregate_at_test_time(trained, split: str = "test", settings: AggregationSettings = AggregationSettings()):
    """:func:`learn_expert_weights` for a model rebuilt by :func:`fbl.engine.experiment.load_trained`, on the
    images of ``split`` (its labels unread); afterwards evaluating ``trained.model`` uses the learnt weights."""
    return learn_expert_weights(
        trained.model, trained.eval_loader(split), execution=Execution(trained.dist.device), dist=trained.dist,
        logit_scale=trained.logit_scale, settings=settings,
    )  # fmt: skip
