from __future__ import annotations

import math
from itertools import islice

import torch

from fbl.engine.progress import Progress, no_progress
from fbl.errors import TrainingDiverged
from fbl.mixup import mixup_batch, mixup_loss


def train_one_epoch(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    limit_batches: int | None = None,
    mixup_alpha: float | None = None,
    generator: torch.Generator | None = None,
    progress: Progress = no_progress,
) -> dict:
    """One pass over ``loader``. The model returns features too, so every loss sees what it may need.

    Returns the sample-weighted mean loss and the top-1 training accuracy (percent; with mixup,
    the ``lam``-weighted accuracy against both targets).
    """
    model.train()
    total_batches = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    # Sums stay on the device: reading them every batch would wait for the accelerator each step.
    loss_sum, correct, seen = 0.0, 0.0, 0
    batches = progress(islice(loader, total_batches), total=total_batches, desc=f"train {epoch}", leave=False)
    device = next(model.parameters()).device
    for images, target in batches:
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if mixup_alpha:
            images, target_a, target_b, lam = mixup_batch(images, target, mixup_alpha, generator)
        logits, features = model(images, return_features=True)
        if mixup_alpha:
            loss = mixup_loss(criterion, logits, target_a, target_b, lam, features=features)
        else:
            loss = criterion(logits, target, features=features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        with torch.no_grad():
            predicted = logits.argmax(dim=1)
            if mixup_alpha:
                hits = lam * (predicted == target_a).sum() + (1 - lam) * (predicted == target_b).sum()
            else:
                hits = (predicted == target).sum()
            loss_sum = loss_sum + loss.detach().double() * target.shape[0]
            correct = correct + hits
            seen += target.shape[0]
    if seen == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    mean_loss = float(loss_sum) / seen
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: the mean loss is {mean_loss}; try a lower --lr or --lambda_"
        )
    return {"loss": mean_loss, "acc": 100.0 * float(correct) / seen}
