"""Curricula for FBL's stimulus factor alpha, evaluated once per epoch.

Every schedule maps a 0-based ``epoch`` of ``total_epochs`` to a float. ``parabolic`` is the one
the paper's code uses, ``alpha(e) = (e / (E - 10))**2``; note that it passes 1 in the last nine
epochs of a 200-epoch run (alpha(199) = (199/190)**2 ~ 1.097). That is the reference behaviour
and stays the default. For runs of ten epochs or fewer ``E - 10`` is not positive, so the ramp
length falls back to ``max(E - 1, 1)``: alpha climbs from 0 at the first epoch to 1 at the last.
The other curricula are the alternatives the authors list in their training script.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fbl.errors import ConfigError
from fbl.registry import Registry

Schedule = Callable[[int, int], float]

SCHEDULES: Registry[Schedule] = Registry("alpha schedule")
_register = SCHEDULES.decorator


def _parabolic_ramp(total_epochs: int) -> int:
    # The reference divides by E - 10; short runs would divide by zero or a negative number.
    return total_epochs - 10 if total_epochs > 10 else max(total_epochs - 1, 1)


@_register("parabolic")
def parabolic(epoch: int, total_epochs: int) -> float:
    """``(e / (E - 10))**2`` exactly as the reference code; exceeds 1 near the end."""
    return (epoch / _parabolic_ramp(total_epochs)) ** 2


@_register("parabolic-clamped")
def parabolic_clamped(epoch: int, total_epochs: int) -> float:
    """``min(1, (e / (E - 10))**2)``."""
    return min(1.0, parabolic(epoch, total_epochs))


@_register("parabolic-proportional")
def parabolic_proportional(epoch: int, total_epochs: int) -> float:
    """``(e / (0.95 E))**2``: the reference curve's shape at any run length.

    The reference's ``E - 10`` is 95% of its 200 epochs; for a short run ``E - 10`` makes alpha
    pass 1 while the learning rate is still high (at epoch 20 of 30) and end near 2.1.
    """
    return (epoch / (0.95 * total_epochs)) ** 2


@_register("linear")
def linear(epoch: int, total_epochs: int) -> float:
    """``e / E``: head classes first, tail classes later."""
    return epoch / total_epochs


@_register("linear-decreasing")
def linear_decreasing(epoch: int, total_epochs: int) -> float:
    """``(E - e) / E``: tail classes first, head classes later."""
    return (total_epochs - epoch) / total_epochs


@_register("cosine")
def cosine(epoch: int, total_epochs: int) -> float:
    """``1 - cos(pi e / 2E)``."""
    return 1.0 - math.cos(epoch / total_epochs * math.pi / 2)


@_register("sine")
def sine(epoch: int, total_epochs: int) -> float:
    """``sin(pi e / 2E)``."""
    return math.sin(epoch / total_epochs * math.pi / 2)


@_register("parabolic-decreasing")
def parabolic_decreasing(epoch: int, total_epochs: int) -> float:
    """``1 - (e / E)**2``."""
    return 1.0 - (epoch / total_epochs) ** 2


@_register("constant")
def constant(epoch: int, total_epochs: int) -> float:
    """``1`` at every epoch: the full stimulus from the start (no curriculum)."""
    return 1.0


def list_schedules() -> list[str]:
    return SCHEDULES.names()


def get_schedule(name: str) -> Schedule:
    """The schedule function for ``name`` (any spelling: ``parabolic_clamped`` works)."""
    return SCHEDULES.get(name)


def alpha_at(name: str, epoch: int, total_epochs: int) -> float:
    """alpha of schedule ``name`` at 0-based ``epoch`` of ``total_epochs``."""
    if total_epochs < 1:
        raise ConfigError(f"Expected total_epochs >= 1 but got {total_epochs}")
    if epoch < 0:
        raise ConfigError(f"Expected a 0-based epoch >= 0 but got {epoch}")
    return float(get_schedule(name)(epoch, total_epochs))
