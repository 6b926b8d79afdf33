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
CIFAR code (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, 5 epochs, stopping early after an
epoch that leaves a weight below 0.05 when rounded to two decimals, as that code reads them).
**Labels are never read**: a batch may be images alone or ``(images, ...)``,
of which only the first item is used (a test feeds shuffled and missing labels and gets the same
weights).

:func:`sade_view` makes SADE's CIFAR views (MoCo v2's): crop with black padding 4, colour jitter
(0.4, 0.4, 0.4, 0.1) with probability 0.8, greyscale with probability 0.2, Gaussian blur with
:math:`\sigma \sim \mathcal U[0.1, 2]` with probability 0.2, flip (:mod:`fbl.data.colour_augment`).
:func:`learn_expert_weights`'s default view, for models whose data is not held in memory, is the crop
and flip alone on the normalised images.

**Test-agnostic evaluation** (:func:`aggregate_under_priors`, ``fbl eval RUN --test-time-aggregation``):
for each of SADE's eleven test priors, the test split is subsampled as SADE does
(:func:`fbl.label_shift.subsample_indices`), the weights are learnt afresh on that subset's images
(batches of 128, reshuffled every epoch, as SADE's test-time loader) and the subset is scored with them,
beside the plain average of the experts on the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fbl.data.augment import AugmentSpec, apply_crop_flip, crop_flip_params, normalize, random_crop_flip
from fbl.data.colour_augment import JitterDraw, colour_jitter, gaussian_blur, grey
from fbl.data.dataset import LongTailData
from fbl.engine.distributed import Distributed
from fbl.engine.execution import Execution
from fbl.engine.expert_metrics import multi_expert_model
from fbl.engine.progress import Progress, no_progress
from fbl.errors import ConfigError
from fbl.label_shift import SADE_PRIORS, LabelPrior, subsample_counts, subsample_indices

View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def crop_flip_view(padding: int = 4, hflip: bool = True) -> View:
    """A random view: per-image crop of the ``padding``-padded image and horizontal flip."""
    return lambda images, generator: random_crop_flip(images, padding, hflip, generator)


#: SADE's CIFAR test-time views: ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, greyscale p 0.2, blur p 0.2.
JITTER_STRENGTH, JITTER_HUE, JITTER_P, GREY_P, BLUR_P = 0.4, 0.1, 0.8, 0.2, 0.2
BLUR_SIGMA = (0.1, 2.0)


def sade_view(spec: AugmentSpec) -> View:
    """SADE's random view of raw uint8 images (N×C×H×W), normalised with ``spec``'s mean and std.

    The crop (``spec.crop_padding``, black padding) and flip are the dataset's; the colour jitter,
    greyscale and blur follow on RGB images (grey images, e.g. digits-lt, get the crop and flip only).
    The flip is applied with the crop: it commutes with the colour steps and the symmetric blur.
    """

    def view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        dy, dx, flip = crop_flip_params(n, spec.crop_padding, spec.hflip, generator)
        x = apply_crop_flip(images, dy, dx, flip, spec.crop_padding).to(torch.float32) / 255
        if spec.num_channels == 3:
            x = colour_jitter(x, JitterDraw.draw(n, JITTER_STRENGTH, JITTER_HUE, JITTER_P, generator))
            greyed = (torch.rand(n, generator=generator) < GREY_P).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(greyed, grey(x).expand_as(x), x)
            blurred = (torch.rand(n, generator=generator) < BLUR_P).to(x.device)
            sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * torch.rand(n, generator=generator)
            if bool(blurred.any()):
                x[blurred] = gaussian_blur(x[blurred], sigma[blurred.cpu()])
        mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    return view


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
        # SADE's check reads the weights rounded to two decimals (np.round): it stops below 0.045, not 0.05.
        if bool((raw.detach().softmax(dim=0).round(decimals=2) < settings.min_weight).any()):
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


class ShuffledBatches:
    """Batches of ``images`` alone (no labels), in a new random order each time they are iterated."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int):
        self.images, self.batch_size = images, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.images.shape[0], generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            yield self.images[order[start : start + self.batch_size]]


def _plain_expert_logits(model, images, spec: AugmentSpec, execution: Execution, logit_scale: float) -> torch.Tensor:
    """Every expert's logits on the unaugmented ``images`` (uint8), (N, K, C) on the CPU."""
    chunks = []
    for start in range(0, images.shape[0], 512):
        x = normalize(images[start : start + 512], spec.mean, spec.std)
        chunks.append(_expert_logits(model, x.to(execution.device), execution, logit_scale).cpu())
    return torch.cat(chunks)


def _top1(expert_logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> float:
    combined = torch.einsum("nkc,k->nc", expert_logits, weights.to(expert_logits.dtype))
    return 100.0 * float((combined.argmax(1) == labels).double().mean())


def aggregate_under_priors(
    trained,
    split: str = "test",
    *,
    execution: Execution | None = None,
    priors: tuple[LabelPrior, ...] = SADE_PRIORS,
    settings: AggregationSettings = AggregationSettings(),
    batch_size: int = 128,
    progress: Progress = no_progress,
) -> dict[str, dict]:
    """SADE's test-agnostic protocol for a multi-expert run rebuilt by :func:`fbl.engine.experiment.load_trained`.

    Returns ``{prior name: {"images", "weights", "aggregated", "averaged"}}``: the size of the subsampled
    split, the weights learnt on its images, and its top-1 (%) with them and with the experts' plain
    average. The labels are read only to score. The model's own weights are left as they were.
    """
    data = trained.data
    experts_model = multi_expert_model(trained.model)
    if experts_model is None:
        raise ConfigError("--test-time-aggregation needs a multi-expert run (e.g. --preset cifar10-lt-sade)")
    if not isinstance(data, LongTailData):
        raise ConfigError(f"--test-time-aggregation is built for the datasets held in memory, not {data.name!r}")
    if trained.dist.enabled:
        raise ConfigError("run fbl eval --test-time-aggregation in one process (not under torchrun)")
    splits = (*data.eval_splits, *data.end_of_run_splits)
    if split not in splits:
        raise ConfigError(f"{data.name} has no {split!r} split here; it has: {', '.join(splits)}")
    execution = execution or Execution(trained.dist.device)
    images, labels = data.eval_tensors(split)
    before = experts_model.expert_weights.detach().clone()
    logits = _plain_expert_logits(trained.model, images, data.augment, execution, trained.logit_scale)
    uniform = torch.full((experts_model.num_experts,), 1.0 / experts_model.num_experts)
    per_class = int(np.bincount(labels.numpy(), minlength=data.num_classes).min())
    table = {}
    try:
        for prior in progress(priors, desc=f"test-time aggregation on {split}", unit="prior"):
            keep = torch.from_numpy(
                subsample_indices(labels.numpy(), subsample_counts(prior.weights(data.class_counts), per_class))
            )
            batches = ShuffledBatches(images[keep], batch_size, settings.seed)
            weights = learn_expert_weights(
                trained.model, batches, view=sade_view(data.augment), execution=execution,
                logit_scale=trained.logit_scale, settings=settings,
            )  # fmt: skip
            table[prior.name] = {
                "images": len(keep),
                "weights": weights.tolist(),
                "aggregated": _top1(logits[keep], labels[keep], weights),
                "averaged": _top1(logits[keep], labels[keep], uniform),
            }
    finally:
        experts_model.set_expert_weights(before)
    return table
