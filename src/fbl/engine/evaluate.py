from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import torch

from fbl.engine.distributed import Distributed
from fbl.engine.execution import Execution
from fbl.engine.progress import Progress, no_progress
from fbl.metrics import ClassMetrics


@torch.inference_mode()
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
) -> dict:
    """Top-1/5, many/medium/few, per-class accuracy and feature norm on ``loader``.

    Runs under ``execution``'s autocast and memory format (fp32 eager when not given); metrics are
    accumulated in float64. Predictions use the raw logits ``z`` (never FBL's shifted ones), times
    ``logit_scale`` (the loss's :attr:`~fbl.losses.base.LongTailLoss.logit_scale`: LDAM's ``s``, else 1);
    ``logit_transform`` is the hook for post-hoc adjustments chosen at evaluation time, applied after.
    """
    model.eval()
    metrics = ClassMetrics(len(class_counts))
    total_batches = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    execution = execution or Execution(next(model.parameters()).device)
    batches = progress(islice(loader, total_batches), total=total_batches, desc="eval", leave=False)
    for _, target, logits, features in forward_batches(model, batches, execution, logit_scale):
        if logit_transform is not None:
            logits = logit_transform(logits)
        metrics.update(logits, target, features)
    if dist is not None and dist.enabled:  # every rank saw a disjoint share: the sums add up exactly
        metrics.load_state_tensor(dist.all_reduce_sum(metrics.state_tensor()))
    return metrics.compute(class_counts)


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
