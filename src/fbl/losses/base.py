"""The contract every loss in the registry follows."""
from __future__ import annotations

import math

import torch
from torch import nn

from fbl.errors import ConfigError
from fbl.losses._validation import (
    Counts,
    check_class_counts,
    check_epoch_index,
    check_reduction,
    check_weight,
)

WEIGHTINGS = ("none", "effective-number", "inverse-frequency")


def check_weighting(weighting: str | None) -> str:
    """Canonical weighting name (``None`` and ``"none"`` both mean no class weighting)."""
    if weighting is None:
        return "none"
    key = str(weighting).strip().lower().replace("_", "-")
    if key not in WEIGHTINGS:
        raise ConfigError(f"Expected weighting in {WEIGHTINGS} (or None) but got {weighting!r}")
    return key


def check_beta(beta) -> float:
    try:
        as_float = float(beta)
    except (TypeError, ValueError):
        as_float = math.nan
    if not 0.0 < as_float < 1.0:
        raise ConfigError(f"Expected beta in the open interval (0, 1) but got {beta!r}")
    return as_float


def class_weights_for(weighting: str, class_counts: Counts, beta: float = 0.9999) -> torch.Tensor | None:
    """Per-class weights (summing to C) for a weighting name of :data:`WEIGHTINGS`; ``None`` for ``"none"``."""
    # Imported here: fbl.class_weights itself imports fbl.losses._validation, so a module-level
    # import would make the two packages' import order matter.
    from fbl import class_weights

    weighting = check_weighting(weighting)
    if weighting == "effective-number":
        return class_weights.effective_number_weights(class_counts, beta=beta)
    if weighting == "inverse-frequency":
        return class_weights.inverse_frequency_weights(class_counts)
    return None


class LongTailLoss(nn.Module):
    r"""Base class: class counts and per-class weight held as buffers, one call convention.

    Subclasses implement ``forward(logits, target, *, features=None)`` and use :attr:`weight`, the
    per-class weight active at the current epoch (``None`` when there is none). ``set_epoch(epoch)``
    is called by the trainer at the start of every (0-based) epoch; subclasses that override it call
    ``super().set_epoch(epoch)``. Buffers follow ``module.to(...)``; forward casts them to the
    logits' device and dtype.

    Args:
        class_counts: training samples per class ``n_j``.
        weight: explicit per-class weight (length C).
        reduction: ``"mean"`` (weighted mean, as :func:`torch.nn.functional.cross_entropy`),
            ``"sum"`` or ``"none"``.
        weighting: derive the per-class weight from the counts instead: ``None``/``"none"``,
            ``"effective-number"`` (class-balanced weights of Cui et al., CVPR 2019,
            :math:`w_j \propto (1-\beta)/(1-\beta^{n_j})`) or ``"inverse-frequency"``
            (:math:`w_j \propto 1/n_j`); both normalised to sum to C. Not together with ``weight``.
        beta: :math:`\beta` of the effective number, in (0, 1).
        drw_epoch: deferred re-weighting (Cao et al., NeurIPS 2019): the per-class weight is off
            (``weight`` is ``None``) for epochs ``< drw_epoch`` and on from ``drw_epoch``. With neither
            ``weight`` nor a weighting it defers effective-number weights with ``beta``, as LDAM-DRW does.
    """

    def __init__(
        self,
        class_counts: Counts,
        weight=None,
        reduction: str = "mean",
        *,
        weighting: str | None = None,
        beta: float = 0.9999,
        drw_epoch: int | None = None,
    ):
        super().__init__()
        counts = check_class_counts(class_counts)
        self.num_classes = len(counts)
        self.reduction = check_reduction(reduction)
        self.register_buffer("class_counts", torch.tensor(counts, dtype=torch.float32))
        self.weighting = check_weighting(weighting)
        self.beta = check_beta(beta)
        self.drw_epoch = None if drw_epoch is None else check_epoch_index(drw_epoch, "drw_epoch")
        if weight is not None and self.weighting != "none":
            raise ConfigError(
                f"Expected either an explicit weight or weighting={self.weighting!r}, not both, but got weight={weight!r}"
            )
        if weight is None:
            if self.weighting == "none" and self.drw_epoch is not None:
                # DRW without a weight source defers the class-balanced weights of the LDAM-DRW recipe.
                self.weighting = "effective-number"
            weight = class_weights_for(self.weighting, counts, self.beta)
        # The weight as configured; :attr:`weight` is what is active at the current epoch.
        self.register_buffer("class_weight", check_weight(weight, self.num_classes))
        self.epoch = 0

    @property
    def weight_active(self) -> bool:
        """Whether the per-class weight applies at the current epoch (always, unless DRW defers it)."""
        return self.drw_epoch is None or self.epoch >= self.drw_epoch

    @property
    def weight(self) -> torch.Tensor | None:
        """Per-class weight used by ``forward`` at the current epoch, or ``None``."""
        return self.class_weight if self.weight_active else None

    @weight.setter
    def weight(self, value) -> None:
        value = check_weight(value, self.num_classes)
        self.class_weight = None if value is None else value.to(self.class_counts.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_epoch_index(epoch, "epoch")

    def extra_repr(self) -> str:
        text = f"num_classes={self.num_classes}, reduction={self.reduction!r}"
        if self.weighting == "effective-number":
            text += f", weighting={self.weighting!r}, beta={self.beta}"
        elif self.weighting != "none":
            text += f", weighting={self.weighting!r}"
        elif self.class_weight is not None:
            text += ", weight=explicit"
        if self.drw_epoch is not None:
            text += f", drw_epoch={self.drw_epoch}"
        return text
