"""Evaluation: one forward pass over a split, per-class sums, and optionally the per-image predictions.

The sums (:class:`~fbl.metrics.ClassMetrics`) are all-reduced when distributed, so every number equals
a single-process evaluation. The sums include, for each test prior of :mod:`fbl.label_shift`, the
per-class hits of the prior-corrected predictions: the correction is applied here, to the logits of
every batch, because it needs only those logits and the priors, and then costs no per-image storage
(C logits per image would be 4 GB for iNaturalist's 8,142 classes).

:func:`evaluate_with_predictions` also returns each image's label and top-1 prediction (gathered
from all ranks, in split order), which confidence intervals and paired tests between runs need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch

from fbl.data.sharding import eval_share
from fbl.engine.distributed import Distributed
from fbl.engine.execution import Execution
from fbl.engine.progress import Progress, no_progress
from fbl.metrics import ClassMetrics
from fbl.predictions import Predictions


def evaluate(
    model: torch.nn.Module,
    loader,
    class_counts: list[int],
    *,
    execution: Execution | None = None,
    dist: Distributed | None = None,
    limit_batches: int | None = None,
    logit_scale: float = 1.0,
    logit_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Progress = no_progress,
    source_prior: Sequence[float] | None = None,
) -> dict:
    """Top-1/5, many/medium/few, per-class accuracy and feature norm, worst-class accuracy, harmonic and
    geometric mean of the per-class accuracies, macro-F1, and accuracy under SADE's test priors, on ``loader``.

    Runs under ``execution``'s autocast and memory format (fp32 eager when not given); metrics are
    accumulated in float64. Predictions use the raw logits ``z`` (never FBL's shifted ones), times
    ``logit_scale`` (the loss's :attr:`~fbl.losses.base.LongTailLoss.logit_scale`: LDAM's ``s``, else 1);
    ``logit_transform`` is the hook for post-hoc adjustments chosen at evaluation time, applied after.
    The prior correction (``test_priors``' ``corrected``) starts from ``z`` times ``logit_scale``, not
    from the transformed logits, and assumes they estimate ``source_prior`` (default: ``class_counts``).
    """
    metrics, _ = _evaluate(
        model, loader, class_counts, execution=execution, dist=dist, limit_batches=limit_batches,
        logit_scale=logit_scale, logit_transform=logit_transform, progress=progress, source_prior=source_prior,
        keep_predictions=False,
    )  # fmt: skip
    return metrics


def evaluate_with_predictions(
    model: torch.nn.Module, loader, class_counts: list[int], *, image_ids: np.ndarray | None = None, **options
) -> tuple:
    """``(metrics, predictions)``: :func:`evaluate`'s metrics (same keyword options) and the
    :class:`~fbl.predictions.Predictions` of every image of the split, on every rank; ``image_ids``
    (the dataset's :meth:`~fbl.data.contract.LongTailDataset.image_ids` of the split) name each image."""
    metrics, predictions = _evaluate(model, loader, class_counts, keep_predictions=True, **options)
    if image_ids is not None:
        predictions = dataclasses.replace(predictions, image=np.asarray(image_ids, dtype=np.int64)[predictions.index])
    return metrics, predictions


@torch.inference_mode()
def _evaluate(
    model, loader, class_counts, *, execution=None, dist=None, limit_batches=None, logit_scale=1.0,
    logit_transform=None, progress=no_progress, source_prior=None, keep_predictions=False,
) -> tuple[dict, Predictions | None]:  # fmt: skip
    model.eval()
    metrics = ClassMetrics(len(class_counts), class_counts=class_counts, source=source_prior)
    labels, predicted = [], []
    total_batches = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    execution = execution or Execution(next(model.parameters()).device)
    batches = progress(islice(loader, total_batches), total=total_batches, desc="eval", leave=False)
    for _, target, logits, features in forward_batches(model, batches, execution, logit_scale):
        adjusted = logits if logit_transform is None else logit_transform(logits)
        prediction = metrics.update(adjusted, target, features, correct_from=logits)
        if keep_predictions:
            labels.append(target.cpu())
            predicted.append(prediction)
    if dist is not None and dist.enabled:  # every rank saw a disjoint share: the sums add up exactly
        metrics.load_state_tensor(dist.all_reduce_sum(metrics.state_tensor()))
    predictions = _gather(labels, predicted, len(class_counts), dist) if keep_predictions else None
    return metrics.compute(class_counts), predictions


def _gather(labels: list, predicted: list, num_classes: int, dist: Distributed | None) -> Predictions:
    """Every rank's (label, prediction) pairs in split order.

    Rank ``r`` of ``W`` evaluates positions ``r, r + W, ...`` of the split (:func:`~fbl.data.sharding.eval_share`);
    each rank writes its pairs at their positions in a table of zeros, and a sum over ranks fills it.
    """
    label = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)
    prediction = torch.cat(predicted).long() if predicted else torch.zeros(0, dtype=torch.long)
    if dist is None or not dist.enabled:
        return Predictions(np.arange(len(label)), label.numpy(), prediction.numpy(), num_classes)
    world, n = dist.world_size, len(label)
    counts = torch.zeros(world, dtype=torch.long)
    counts[dist.rank] = n
    dist.all_reduce_sum(counts)
    size = max((rank + (c - 1) * world + 1 for rank, c in enumerate(counts.tolist()) if c), default=0)
    table = torch.zeros(size, 3, dtype=torch.long)  # present, label, prediction
    positions = eval_share(size, dist.rank, world)[:n]
    table[positions, 0], table[positions, 1], table[positions, 2] = 1, label, prediction
    dist.all_reduce_sum(table)
    present = table[:, 0] > 0
    index = torch.arange(size)[present]
    return Predictions(index.numpy(), table[present, 1].numpy(), table[present, 2].numpy(), num_classes)


def forward_batches(
    model: torch.nn.Module, batches: Iterable, execution: Execution, logit_scale: float = 1.0
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(images, target, logits, features)`` for each ``(images, target)`` batch: the batch on the device
    and the model's raw logits times ``logit_scale`` and pooled features, in float32, computed under
    ``execution``'s autocast and memory format. The one forward pass every evaluation makes."""
    for images, target in batches:
        images, target = execution.prepare_batch(images, target)
        with execution.autocast():
            logits, features = model(images, return_features=True)
        yield images, target, logits.float() * logit_scale, features.float()


def forward_expert_batches(model: torch.nn.Module, batches: Iterable, execution: Execution, logit_scale: float = 1.0):
    """``(target, experts)`` for each batch of a multi-expert model: its
    :class:`~fbl.models.multi_expert_resnet.ExpertOutputs` (every expert's logits times ``logit_scale``
    and features, float32) from the same one forward call as :func:`forward_batches`."""
    for images, target in batches:
        images, target = execution.prepare_batch(images, target)
        with execution.autocast():
            experts = model(images, return_features=True, return_experts=True)[2]
        yield target, experts._replace(logits=experts.logits.float() * logit_scale, features=experts.features.float())
