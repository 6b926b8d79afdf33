from __future__ import annotations


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
