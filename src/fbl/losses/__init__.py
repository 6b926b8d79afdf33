"""Losses for long-tailed recognition under one contract: ``loss(logits, target, *, features=None)``."""

from fbl.losses.balanced_softmax_loss import BalancedSoftmaxLoss
from fbl.losses.balpoe_loss import BalPoELoss
from fbl.losses.base import LongTailLoss
from fbl.losses.cross_entropy_loss import CrossEntropyLoss
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.factory import build_loss, check_loss_options
from fbl.losses.fbl_experts_loss import FBLExpertsLoss
from fbl.losses.feature_balanced_loss import FeatureBalancedLoss
from fbl.losses.focal_loss import FocalLoss
from fbl.losses.ldam_loss import LDAMLoss
from fbl.losses.logit_adjusted_loss import LogitAdjustedLoss
from fbl.losses.registry import (
    LOSSES,
    create_loss,
    list_losses,
    loss_class,
    loss_parameters,
    loss_weighting,
    register_loss,
    register_variant,
    resolve_loss_name,
)
from fbl.losses.ride_loss import RIDELoss
from fbl.losses.ride_router_loss import RIDERouterLoss
from fbl.losses.sade_loss import SADELoss
from fbl.losses.schedules import SCHEDULES, alpha_at, list_schedules, register_schedule

__all__ = [
    "LOSSES",
    "SCHEDULES",
    "LongTailLoss",
    "build_loss",
    "check_loss_options",
    "loss_parameters",
    "loss_weighting",
    "CrossEntropyLoss",
    "FeatureBalancedLoss",
    "FocalLoss",
    "LDAMLoss",
    "BalancedSoftmaxLoss",
    "LogitAdjustedLoss",
    "EnsembleLoss",
    "RIDELoss",
    "RIDERouterLoss",
    "SADELoss",
    "BalPoELoss",
    "FBLExpertsLoss",
    "create_loss",
    "list_losses",
    "loss_class",
    "register_loss",
    "register_variant",
    "resolve_loss_name",
    "alpha_at",
    "list_schedules",
    "register_schedule",
]
