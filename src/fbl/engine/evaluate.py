from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import torch

from fbl.engine.progress import Progress, no_progress
from fbl.metrics import ClassMetrics


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    loader,
    class_counts: list[int],
    *,
    limit_batches: int | None = None,
    logit_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Progress = no_progress,
) -> dict:
    """Top-1/5, many/medium/few, per-class accuracy and feature norm on ``loader``.

    Predictions use the raw logits ``z`` (never FBL's shifted ones); ``logit_transform`` is the
    hook for post-hoc adjustments chosen at evaluation time.
    """
    model.eval()
    metrics = ClassMetrics(len(class_counts))
    total_batches = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    device = next(model.parameters()).device
    for images, target in progress(islice(loader, total_batches), total=total_batches, desc="eval", leave=False):
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        logits, features = model(images, return_features=True)
        if logit_transform is not None:
            logits = logit_transform(logits)
        metrics.update(logits, target, features)
    return metrics.compute(class_counts)
