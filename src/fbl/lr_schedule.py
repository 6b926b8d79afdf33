"""Learning rate per epoch: the LDAM-DRW / FBL step schedule, or a cosine one (RIDE's router stage)."""

from __future__ import annotations

import math

#: ``--lr-schedule`` values.
LR_SCHEDULES = ("step", "cosine")


def step_lr_with_warmup(
    epoch: int,
    base_lr: float,
    total_epochs: int,
    warmup_epochs: int = 5,
    milestones: tuple[float, ...] = (0.8, 0.9),
    decay: tuple[float, ...] = (0.01, 0.0001),
) -> float:
    """Learning rate of 0-based ``epoch`` under the LDAM-DRW / FBL CIFAR schedule.

    Linear warm-up ``base_lr * (e + 1) / warmup`` for the first ``warmup_epochs`` epochs, then
    ``base_lr * decay[k]`` once ``e + 1`` passes milestone ``k`` (given as a fraction of the run,
    ``round(m * total_epochs)``: 0.8 and 0.9 of 200 are the reference's epochs 160 and 180).
    """
    current = epoch + 1
    if current <= warmup_epochs:
        return base_lr * current / warmup_epochs
    factor = 1.0
    for fraction, scale in zip(milestones, decay, strict=False):
        if current > round(fraction * total_epochs):
            factor = scale
    return base_lr * factor


def cosine_lr_with_warmup(epoch: int, base_lr: float, total_epochs: int, warmup_epochs: int = 0) -> float:
    r"""Learning rate of 0-based ``epoch``: the same linear warm-up, then cosine annealing to 0 over the rest.

    After ``W`` warm-up epochs, epoch ``e`` gets :math:`\tfrac12 \eta (1 + \cos(\pi (e - W) / (E - W)))`:
    PyTorch's ``CosineAnnealingLR(T_max=E - W, eta_min=0)`` stepped once per epoch (RIDE's router stage:
    5 epochs from 0.01).
    """
    if epoch + 1 <= warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    span = max(total_epochs - warmup_epochs, 1)
    return 0.5 * base_lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def lr_at(schedule: str, epoch: int, base_lr: float, total_epochs: int, warmup_epochs: int, milestones, decay) -> float:
    """The learning rate of ``epoch`` under ``schedule`` (one of :data:`LR_SCHEDULES`)."""
    if schedule == "cosine":
        return cosine_lr_with_warmup(epoch, base_lr, total_epochs, warmup_epochs)
    return step_lr_with_warmup(epoch, base_lr, total_epochs, warmup_epochs, tuple(milestones), tuple(decay))
