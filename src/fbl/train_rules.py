"""The ``--train_rule`` options: how a run re-samples the data and re-weights the loss.

A rule is data: which named weighting (of :data:`fbl.class_weights.WEIGHTINGS`) drives the sampler,
which weights the loss, and whether the loss weights are deferred (DRW, Cao et al., NeurIPS 2019).
Every class weight of ``fbl train`` comes from here, including the weighting a ``cb-*`` loss names
(computed by :func:`fbl.class_weights.resolve_class_weight`, as ``create_loss`` does), and every
check of the class-weight settings is :func:`check_weighting` (which ``config.validate`` calls too).
The trainer calls :func:`resolve_train_rule` once and, each epoch, gives the sampler the epoch and
the loss its weight::

    rule = resolve_train_rule(cfg.train_rule, class_counts, labels, total_epochs=cfg.epochs, seed=cfg.seed)
    for epoch in range(cfg.epochs):
        rule.sampler.set_epoch(epoch)            # when rule.sampler is not None
        criterion.set_weight(rule.weight_at(epoch))  # None: unweighted loss

Names are case-insensitive, ``_`` reads as ``-``, and the seed code's spellings (``BalancedRS``,
``EffectNumRW``, ``DRW``, ...) are accepted as aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.utils.data import Sampler

from fbl.checks import Counts, check_beta, check_class_counts
from fbl.class_weights import WEIGHTINGS, resolve_class_weight, single_weighting, weights_for
from fbl.errors import ConfigError
from fbl.registry import Registry
from fbl.samplers import ClassAwareSampler, ClassWeightedSampler, Labels, _check_labels

__all__ = [
    "TrainRule",
    "ResolvedRule",
    "check_drw_epoch",
    "check_weighting",
    "get_train_rule",
    "list_train_rules",
    "register_train_rule",
    "resolve_train_rule",
]

# DRW's reference schedule switches the weights on at epoch 160 of 200.
DRW_FRACTION = 0.8


class TrainRule:
    """One ``--train_rule``: what re-samples the data and what re-weights the loss, as class attributes.

    A rule is a subclass registered with :func:`register_train_rule`; its docstring is its summary.

    Attributes:
        name: canonical name (set when registered).
        sample_weighting: a weighting of :data:`fbl.class_weights.WEIGHTINGS` driving a
            :class:`ClassWeightedSampler`, or ``None``.
        class_aware: use a :class:`ClassAwareSampler` instead.
        loss_weighting: the weighting the loss is re-weighted by, or ``None``.
        deferred: the loss weights apply only from ``drw_epoch`` on (DRW, Cao et al., NeurIPS 2019).
    """

    name: ClassVar[str] = ""
    sample_weighting: ClassVar[str | None] = None
    class_aware: ClassVar[bool] = False
    loss_weighting: ClassVar[str | None] = None
    deferred: ClassVar[bool] = False


TRAIN_RULES: Registry[type[TrainRule]] = Registry("train rule")


def register_train_rule(name: str, *aliases: str):
    """Class decorator: register a :class:`TrainRule` subclass under ``name`` and ``aliases`` and set its ``name``."""
    register = TRAIN_RULES.decorator(name, *aliases)

    def wrap(rule: type[TrainRule]) -> type[TrainRule]:
        for weighting in (rule.sample_weighting, rule.loss_weighting):
            if weighting is not None and weighting not in WEIGHTINGS:
                raise ValueError(f"train rule {name!r}: unknown weighting {weighting!r}")
        register(rule)
        rule.name = name
        return rule

    return wrap


@register_train_rule("none")
class InstanceBalanced(TrainRule):
    """Instance-balanced: plain shuffle, unweighted loss."""


@register_train_rule("balanced-rs", "BalancedRS")
class BalancedResampling(TrainRule):
    """Class-balanced re-sampling (``w ∝ 1/n``: every class equally often)."""

    sample_weighting = "inverse-frequency"


@register_train_rule("sqrt-rs", "SquareRootRS", "sqrt")
class SquareRootResampling(TrainRule):
    """Square-root re-sampling (class drawn ∝ ``sqrt(n)``)."""

    sample_weighting = "square-root"


@register_train_rule("effective-number-rs", "EffectNumRS")
class EffectiveNumberResampling(TrainRule):
    """Re-sampling by effective number (``beta``)."""

    sample_weighting = "effective-number"


@register_train_rule("class-aware", "ClassAware")
class ClassAware(TrainRule):
    """Class-aware round-robin, ``samples_per_class`` samples per class."""

    class_aware = True


@register_train_rule("balanced-rw", "BalancedRW")
class BalancedReweighting(TrainRule):
    """Loss re-weighting by inverse frequency."""

    loss_weighting = "inverse-frequency"


@register_train_rule("effective-number-rw", "EffectNumRW")
class EffectiveNumberReweighting(TrainRule):
    """Loss re-weighting by effective number (``beta``)."""

    loss_weighting = "effective-number"


@register_train_rule("drw", "DRW")
class DeferredReweighting(TrainRule):
    """Deferred re-weighting: effective-number loss weights from ``drw_epoch`` on (default ``round(0.8 E)``)."""

    loss_weighting = "effective-number"
    deferred = True


@dataclass(frozen=True, eq=False)
class ResolvedRule:
    """A rule bound to one training set: what the trainer actually uses.

    Attributes:
        name: canonical rule name.
        sampler: the ``DataLoader`` sampler (call ``set_epoch`` each epoch), or ``None`` for a plain
            instance-balanced shuffle.
        class_weight: float64 per-class loss weights summing to C, or ``None`` (unweighted loss).
        drw_epoch: first 0-based epoch at which ``class_weight`` applies (DRW); ``None`` means from
            the start.
        weighting: the name of the weighting ``class_weight`` holds (for the run's log), or ``None``.
    """

    name: str
    sampler: Sampler | None = None
    class_weight: torch.Tensor | None = field(default=None, repr=False)
    drw_epoch: int | None = None
    weighting: str | None = None

    def weight_at(self, epoch: int) -> torch.Tensor | None:
        """Loss weights for 0-based ``epoch``: ``None`` (unweighted) before ``drw_epoch``."""
        if self.drw_epoch is not None and epoch < self.drw_epoch:
            return None
        return self.class_weight


def list_train_rules() -> list[str]:
    """Canonical rule names, sorted."""
    return TRAIN_RULES.names()


def get_train_rule(name: str | None) -> type[TrainRule]:
    """Look a rule up by name or alias (case-insensitive); Python ``None`` means ``"none"``."""
    return TRAIN_RULES.get("none" if name is None else name)


def default_drw_epoch(total_epochs: int) -> int:
    """``round(0.8 * total_epochs)`` (160 of 200), kept below ``total_epochs`` so short runs still switch."""
    return min(round(DRW_FRACTION * total_epochs), total_epochs - 1)


def check_drw_epoch(drw_epoch: int | None, epochs: int) -> int | None:
    """``drw_epoch`` as an int in ``0 .. epochs - 1`` (``None`` passes), or a one-line :class:`ConfigError`."""
    if drw_epoch is None:
        return None
    if isinstance(drw_epoch, bool) or int(drw_epoch) != drw_epoch or drw_epoch < 0:
        raise ConfigError(f"Expected drw_epoch to be a 0-based epoch >= 0 but got {drw_epoch!r}")
    if drw_epoch >= epochs:
        raise ConfigError(f"Expected 0 <= drw_epoch < epochs ({epochs}) but got {drw_epoch}: DRW would never switch on")
    return int(drw_epoch)


def check_weighting(train_rule: str | None, loss_weighting: str | None, drw_epoch: int | None, epochs: int) -> None:
    """Refuse, in one line each, the class-weight settings that make no sense together.

    * two sources of loss weights: a re-weighting rule and a ``cb-*`` loss;
    * ``drw_epoch`` outside the run (DRW would never switch on);
    * ``drw_epoch`` with no loss weights to defer (the rule and the loss weight no class): rather than
      invent a weighting, the message names ``--train_rule drw``, which defers effective-number weights.

    Args:
        train_rule: rule name or alias.
        loss_weighting: the weighting a ``cb-*`` loss names (:func:`fbl.losses.loss_weighting`), or ``None``.
        drw_epoch: 0-based epoch the loss weights switch on at, or ``None``.
        epochs: length of the run.
    """
    rule = get_train_rule(train_rule)
    weighting = single_weighting(rule.name, rule.loss_weighting, loss_weighting)
    drw_epoch = check_drw_epoch(drw_epoch, epochs)
    if drw_epoch is not None and weighting is None:
        raise ConfigError(
            f"drw_epoch {drw_epoch} defers the loss's class weights, but neither train rule {rule.name!r} nor the loss "
            "weights any class: use --train_rule drw (effective-number weights from drw_epoch on), or drop --drw-epoch"
        )


def resolve_train_rule(
    name: str | None,
    class_counts: Counts,
    labels: Labels | None = None,
    *,
    total_epochs: int,
    seed: int = 0,
    beta: float = 0.9999,
    drw_epoch: int | None = None,
    samples_per_class: int = 4,
    loss_weighting: str | None = None,
) -> ResolvedRule:
    """Bind rule ``name`` to a training set.

    Args:
        name: rule name or alias (see :func:`list_train_rules`).
        class_counts: training count of every class.
        labels: class of every training sample in dataset order; needed by the re-sampling rules.
        total_epochs: length of the run, for DRW's default switch epoch.
        seed: sampler seed; the sampler's draws depend only on ``(seed, epoch)``.
        beta: effective-number hyper-parameter, in (0, 1).
        drw_epoch: epoch (0-based) the loss weights switch on at, under any rule that weights the
            loss or with a ``cb-*`` loss; ``drw`` defaults to ``round(0.8 * total_epochs)``.
        samples_per_class: k of the class-aware sampler.
        loss_weighting: the weighting a ``cb-*`` loss names (``"effective-number"``); the loss is
            weighted by it unless the rule weights the loss itself, which is refused (two sources).

    Raises:
        ConfigError: unknown rule, an option out of range, or settings :func:`check_weighting` refuses.
    """
    rule = get_train_rule(name)
    counts = check_class_counts(class_counts)
    if isinstance(total_epochs, bool) or int(total_epochs) != total_epochs or total_epochs < 1:
        raise ConfigError(f"Expected total_epochs to be a positive integer but got {total_epochs!r}")
    # Every option is checked whatever the rule, so a bad config fails before the run that would use it.
    beta = check_beta(beta)
    if isinstance(samples_per_class, bool) or int(samples_per_class) != samples_per_class or samples_per_class < 1:
        raise ConfigError(f"Expected samples_per_class to be a positive integer but got {samples_per_class!r}")
    check_weighting(rule.name, loss_weighting, drw_epoch, int(total_epochs))

    sampler = None
    if rule.sample_weighting is not None or rule.class_aware:
        sampler_labels = _labels_matching(labels, counts, rule.name)
        if rule.class_aware:
            sampler = ClassAwareSampler(sampler_labels, samples_per_class=samples_per_class, seed=seed)
        else:
            sampler = ClassWeightedSampler(sampler_labels, weights_for(rule.sample_weighting, counts, beta), seed=seed)

    class_weight = resolve_class_weight(
        counts, rule=rule.name, rule_weighting=rule.loss_weighting, loss_weighting=loss_weighting, beta=beta
    )
    # A deferring rule switches at round(0.8 E) unless told otherwise; under any other rule the loss's
    # weights (the rule's or a cb-* loss's) are deferred only when a drw_epoch is given.
    switch = default_drw_epoch(int(total_epochs)) if rule.deferred and drw_epoch is None else drw_epoch
    return ResolvedRule(
        name=rule.name,
        sampler=sampler,
        class_weight=class_weight,
        drw_epoch=None if switch is None else int(switch),
        weighting=single_weighting(rule.name, rule.loss_weighting, loss_weighting),
    )


def _labels_matching(labels: Labels | None, counts: list[int], rule_name: str) -> torch.Tensor:
    # Counts and labels come from the same dataset builder; disagreement is a bug, not a user error.
    if labels is None:
        raise ValueError(f"train rule {rule_name!r} re-samples the data: pass the training labels")
    labels = _check_labels(labels)
    from_labels = torch.bincount(labels, minlength=len(counts)).tolist()
    if from_labels != counts:
        raise ValueError(f"class_counts {counts} do not match the counts of the labels {from_labels}")
    return labels
