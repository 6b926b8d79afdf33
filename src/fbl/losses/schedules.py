"""Curricula for FBL's stimulus factor alpha, evaluated once per epoch.

Every schedule maps a 0-based ``epoch`` of ``total_epochs`` to a float. The paper's code uses
``alpha(e) = (e / (E - 10))**2`` with E = 200: it reaches 1 at epoch 190 and passes it in the last
nine epochs (alpha(199) = (199/190)**2 ~ 1.097).

``parabolic`` (the default) is that curve scaled to the run length, ``(e / (0.95 E))**2`` with
``0.95 E`` computed as ``19 E / 20``: at E = 200 the ramp is exactly 190.0, so the paper's runs
get the paper's alpha to the last bit, and a run of any other length gets the same shape. The
literal formula is ``parabolic-literal``: with E - 10 it passes 1 while the learning rate is still
high in short runs (a 12-epoch run ends at alpha = 30.25; a 30-epoch run at 2.1). For runs of ten
epochs or fewer ``E - 10`` is not positive, so its ramp falls back to ``max(E - 1, 1)``.
The other curricula are the alternatives the authors list in their training script.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fbl.errors import ConfigError
from fbl.registry import Registry

Schedule = Callable[[int, int], float]

SCHEDULES: Registry[Schedule] = Registry("alpha schedule")


def register_schedule(name: str, *aliases: str) -> Callable[[Schedule], Schedule]:
    """Function decorator: register an alpha schedule ``(epoch, total_epochs) -> alpha`` under ``name``."""
    return SCHEDULES.decorator(name, *aliases)


def _parabolic_ramp(total_epochs: int) -> int:
    # The reference divides by E - 10; short runs would divide by zero or a negative number.
    return total_epochs - 10 if total_epochs > 10 else max(total_epochs - 1, 1)


@register_schedule("parabolic", "parabolic-proportional", "parabolic-scaled")
def parabolic(epoch: int, total_epochs: int) -> float:
    """``(e / (0.95 E))**2``: the paper's curve at any run length; identical to it at E = 200."""
    return (epoch / (19 * total_epochs / 20)) ** 2


@register_schedule("parabolic-literal")
def parabolic_literal(epoch: int, total_epochs: int) -> float:
    """``(e / (E - 10))**2`` exactly as the reference code, whatever the run length."""
    return (epoch / _parabolic_ramp(total_epochs)) ** 2


@register_schedule("parabolic-clamped")
def parabolic_clamped(epoch: int, total_epochs: int) -> float:
    """``min(1, (e / (E - 10))**2)``."""
    return min(1.0, parabolic_literal(epoch, total_epochs))


@register_schedule("linear")
def linear(epoch: int, total_epochs: int) -> float:
    """``e / E``: head classes first, tail classes later."""
    return epoch / total_epochs


@register_schedule("linear-decreasing")
def linear_decreasing(epoch: int, total_epochs: int) -> float:
    """``(E - e) / E``: tail classes first, head classes later."""
    return (total_epochs - epoch) / total_epochs


@register_schedule("cosine")
def cosine(epoch: int, total_epochs: int) -> float:
    """``1 - cos(pi e / 2E)``."""
    return 1.0 - math.cos(epoch / total_epochs * math.pi / 2)


@register_schedule("sine")
def sine(epoch: int, total_epochs: int) -> float:
    """``sin(pi e / 2E)``."""
    return math.sin(epoch / total_epochs * math.pi / 2)


@register_schedule("parabolic-decreasing")
def parabolic_decreasing(epoch: int, total_epochs: int) -> float:
    """``1 - (e / E)**2``."""
    return 1.0 - (epoch / total_epochs) ** 2


@register_schedule("constant")
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


class Curriculum:
    """Mixin of the losses whose stimulus follows a named α schedule over the run (FBL, FBL experts):
    :meth:`start_curriculum` in ``__init__``, and ``alpha`` follows each ``set_epoch``."""

    def start_curriculum(self, schedule: str, total_epochs: int) -> None:
        if int(total_epochs) < 1:
            raise ConfigError(f"Expected total_epochs >= 1 but got {total_epochs}")
        self.schedule = SCHEDULES.canonical(schedule)
        self.total_epochs = int(total_epochs)
        self.alpha = alpha_at(self.schedule, 0, self.total_epochs)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.alpha = alpha_at(self.schedule, self.epoch, self.total_epochs)
