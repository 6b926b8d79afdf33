"""Losses for long-tailed recognition under one contract: ``loss(logits, target, *, features=None)``."""
from fbl.losses.base import LongTailLoss
from fbl.losses.cross_entropy_loss import CrossEntropyLoss
from fbl.losses.feature_balanced_loss import FeatureBalancedLoss
from fbl.losses.registry import create_loss, list_losses, loss_class, register_loss, resolve_loss_name
from fbl.losses.schedules import alpha_at, list_schedules

__all__ = [
    "LongTailLoss",
    "CrossEntropyLoss",
    "FeatureBalancedLoss",
    "create_loss",
    "list_losses",
    "loss_class",
    "register_loss",
    "resolve_loss_name",
    "alpha_at",
    "list_schedules",
]
