"""Losses for long-tailed recognition under one contract: ``loss(logits, target, *, features=None)``."""
from fbl.losses.balanced_softmax_loss import BalancedSoftmaxLoss
from fbl.losses.base import WEIGHTINGS, LongTailLoss
from fbl.losses.cross_entropy_loss import CrossEntropyLoss
from fbl.losses.feature_balanced_loss import FeatureBalancedLoss
from fbl.losses.focal_loss import FocalLoss
from fbl.losses.ldam_loss import LDAMLoss
from fbl.losses.logit_adjusted_loss import LogitAdjustedLoss
from fbl.losses.registry import (
    create_loss,
    list_losses,
    loss_class,
    register_loss,
    register_variant,
    resolve_loss_name,
)
from fbl.losses.schedules import alpha_at, list_schedules

__all__ = [
    "LongTailLoss",
    "WEIGHTINGS",
    "CrossEntropyLoss",
    "FeatureBalancedLoss",
    "FocalLoss",
    "LDAMLoss",
    "BalancedSoftmaxLoss",
    "LogitAdjustedLoss",
    "create_loss",
    "list_losses",
    "loss_class",
    "register_loss",
    "register_variant",
    "resolve_loss_name",
    "alpha_at",
    "list_schedules",
]
