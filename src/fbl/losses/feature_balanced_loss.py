from __future__ import annotations

import torch

from fbl.errors import ConfigError
from fbl.losses import functional
from fbl.losses._validation import Counts, check_features, check_inputs
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss, register_variant
from fbl.losses.schedules import Curriculum


@register_variant("cb-fbl", "effective-number")
@register_loss("fbl", "feabal", "feature-balanced")
class FeatureBalancedLoss(Curriculum, LongTailLoss):
    r"""Feature-Balanced Loss (Li, Cheung & Jiang, ICME 2022).

    .. math::
        \mathcal L = \mathrm{CE}\big(z_{ij} - \alpha A \tilde\lambda_j / \lVert f_i \rVert_2,\ y_i\big),\quad
        \tilde\lambda_j = \frac{\log n_{max} - \log n_j}{\log n_{max} - \log n_{min}}

    Tail classes get a larger stimulus; dividing by the feature norm means the network can only
    shrink the penalty by growing ``||f||``, which it learns to do for tail samples. ``alpha``
    follows ``schedule`` over ``total_epochs`` and is set by :meth:`set_epoch` (0 before the first
    call, as at epoch 0 of every schedule that starts from 0).

    Args:
        class_counts: training samples per class.
        lambda_: stimulus strength ``A`` (60 on CIFAR-LT, 150 on ImageNet-LT / iNaturalist / Places-LT).
        schedule: curriculum name, see :mod:`fbl.losses.schedules` (default ``parabolic``, the paper's).
        total_epochs: length of the run the curriculum spans.
        weight: optional per-class weight of the cross-entropy.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ``cb-fbl`` is the class-balanced variant (effective-number weights, see
        :func:`~fbl.losses.registry.create_loss`).
    """

    def __init__(
        self,
        class_counts: Counts,
        lambda_: float = 60.0,
        schedule: str = "parabolic",
        total_epochs: int = 200,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        if not float(lambda_) >= 0:
            raise ConfigError(f"Expected lambda_ (stimulus strength A) >= 0 but got {lambda_}")
        self.lambda_ = float(lambda_)
        self.start_curriculum(schedule, total_epochs)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, *, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        check_features(features, logits, "FeatureBalancedLoss")
        return functional._feature_balanced_loss(
            logits, target, features, self.class_counts, self.alpha * self.lambda_, self.weight, self.reduction
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_={self.lambda_}, schedule={self.schedule!r}, alpha={self.alpha:.4f}"
