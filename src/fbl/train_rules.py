"""The ``--train_rule`` options: how a run re-samples the data and re-weights the loss.

A rule is data: which per-class weights (from :mod:`fbl.class_weights`) drive the sampler, which
weight the loss, and whether the loss weights are deferred (DRW, Cao et al., NeurIPS 2019). Every
class weight of a run comes from here, including the weighting a ``cb-*`` loss names. The trainer
calls :func:`resolve_train_rule` once and, each epoch, gives the sampler the epoch and the loss its
weight::

    rule = resolve_train_rule(cfg.train_rule, class_counts, labels, total_epochs=cfg.epochs, seed=cfg.seed)
    for epoch in range(cfg.epochs):
        rule.sampler.set_epoch(epoch)            # when rule.sampler is not None
        criterion.set_weight(rule.weight_at(epoch))  # None: unweighted loss

Names are case-insensitive, ``_`` reads as ``-``, and the seed code's spellings (``BalancedRS``,
``EffectNumRW``, ``DRW``, ...) are accepted as aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import Sampler

from fbl.checks import Counts, check_beta, check_class_counts
from fbl.class_weights import effective_number_weights, inverse_frequency_weights, weights_for
from fbl.errors import ConfigError
from fbl.registry import Registry
from fbl.samplers import ClassAwareSampler, ClassWeightedSampler, Labels, _check_labels

__all__ = ["TrainRule", "ResolvedRule", "resolve_train_rule", "get_train_rule", "list_train_rules"]

# (class_counts, beta) -> per-class weights normalised to sum C.
WeightFn = Callable[[Counts, float], torch.Tensor]

# DRW's reference schedule switches the weights on at epoch 160 of 200.
DRW_FRACTION = 0.8


def class_balanced(class_counts: Counts, beta: float) -> torch.Tensor:
    """``w_j ∝ 1 / n_j``."""
    return inverse_frequency_weights(class_counts, power=1.0)


def square_root(class_counts: Counts, beta: float) -> torch.Tensor:
    """``w_j ∝ n_j^-1/2``: as a sampler, class ``j`` is drawn ∝ ``sqrt(n_j)``."""
    return inverse_frequency_weights(class_counts, power=0.5)


def effective_number(class_counts: Counts, beta: float) -> torch.Tensor:
    """``w_j ∝ (1 - beta) / (1 - beta^n_j)`` (Cui et al., CVPR 2019)."""
    return effective_number_weights(class_counts, beta)


@dataclass(frozen=True)
class TrainRule:
    """One ``--train_rule``: what re-samples the data and what re-weights the loss.

    Attributes:
        name: canonical name.
        aliases: other accepted spellings (the seed code's names).
        sample_weight: per-class weights for a :class:`ClassWeightedSampler`, or ``None``.
        class_aware: use a :class:`ClassAwareSampler` instead.
        class_weight: per-class loss weights, or ``None``.
        deferred: the loss weights apply only from ``drw_epoch`` on (DRW).
    """

    name: str
    summary: str
    aliases: tuple[str, ...] = ()
    sample_weight: WeightFn | None = None
    class_aware: bool = False
    class_weight: WeightFn | None = None
    deferred: bool = False


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
    """

    name: str
    sampler: Sampler | None = None
    class_weight: torch.Tensor | None = field(default=None, repr=False)
    drw_epoch: int | None = None

    def weight_at(self, epoch: int) -> torch.Tensor | None:
        """Loss weights for 0-based ``epoch``: ``None`` (unweighted) before ``drw_epoch``."""
        if self.drw_epoch is not None and epoch < self.drw_epoch:
            return None
        return self.class_weight


TRAIN_RULES: Registry[TrainRule] = Registry("train rule")


def _register(rule: TrainRule) -> None:
    TRAIN_RULES.register(rule.name, rule, *rule.aliases)


for _rule in (
    TrainRule("none", "instance-balanced: plain shuffle, unweighted loss"),
    TrainRule("balanced-rs", "class-balanced re-sampling (w ∝ 1/n)", ("BalancedRS",), sample_weight=class_balanced),
    TrainRule(
        "sqrt-rs",
        "square-root re-sampling (class drawn ∝ sqrt(n))",
        ("SquareRootRS", "sqrt"),
        sample_weight=square_root,
    ),
    TrainRule(
        "effective-number-rs",
        "re-sampling by effective number (beta)",
        ("EffectNumRS",),
        sample_weight=effective_number,
    ),
    TrainRule("class-aware", "class-aware round-robin, k samples per class", ("ClassAware",), class_aware=True),
    TrainRule("balanced-rw", "loss re-weighting by inverse frequency", ("BalancedRW",), class_weight=class_balanced),
    TrainRule(
        "effective-number-rw",
        "loss re-weighting by effective number (beta)",
        ("EffectNumRW",),
        class_weight=effective_number,
    ),
    TrainRule(
        "drw",
        "deferred re-weighting: effective-number loss weights from drw_epoch on",
        ("DRW",),
        class_weight=effective_number,
        deferred=True,
    ),
):
    _register(_rule)


def list_train_rules() -> list[str]:
    """Canonical rule names, sorted."""
    return TRAIN_RULES.names()


def get_train_rule(name: str | None) -> TrainRule:
    """Look a rule up by name or alias (case-insensitive); Python ``None`` means ``"none"``."""
    return TRAIN_RULES.get("none" if name is None else name)


def default_drw_epoch(total_epochs: int) -> int:
    """``round(0.8 * total_epochs)`` (160 of 200), kept below ``total_epochs`` so short runs still switch."""
    return min(round(DRW_FRACTION * total_epochs), total_epochs - 1)


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
        drw_epoch: DRW switch epoch (0-based); default ``round(0.8 * total_epochs)``.
        samples_per_class: k of the class-aware sampler.
        loss_weighting: the weighting a ``cb-*`` loss names (``"effective-number"``); the loss is
            weighted by it unless the rule weights the loss itself, which is refused (two sources).

    Raises:
        ConfigError: unknown rule or an option out of range.
    """
    rule = get_train_rule(name)
    counts = check_class_counts(class_counts)
    if isinstance(total_epochs, bool) or int(total_epochs) != total_epochs or total_epochs < 1:
        raise ConfigError(f"Expected total_epochs to be a positive integer but got {total_epochs!r}")
    # Every option is checked whatever the rule, so a bad config fails before the run that would use it.
    beta = check_beta(beta)
    if isinstance(samples_per_class, bool) or int(samples_per_class) != samples_per_class or samples_per_class < 1:
        raise ConfigError(f"Expected samples_per_class to be a positive integer but got {samples_per_class!r}")

    sampler = None
    if rule.sample_weight is not None or rule.class_aware:
        sampler_labels = _labels_matching(labels, counts, rule.name)
        if rule.class_aware:
            sampler = ClassAwareSampler(sampler_labels, samples_per_class=samples_per_class, seed=seed)
        else:
            sampler = ClassWeightedSampler(sampler_labels, rule.sample_weight(counts, beta), seed=seed)

    if rule.class_weight is not None and loss_weighting is not None:
        raise ConfigError(
            f"Train rule {rule.name!r} re-weights the loss and the loss is already weighted by {loss_weighting}: "
            "use one of them, not both"
        )
    if rule.class_weight is not None:
        class_weight = rule.class_weight(counts, beta)
    elif loss_weighting is not None:
        class_weight = weights_for(loss_weighting, counts, beta)
    elif drw_epoch is not None:
        # --drw-epoch with nothing to defer defers effective-number weights, the LDAM-DRW recipe.
        class_weight = effective_number_weights(counts, beta)
    else:
        class_weight = None

    # A deferring rule switches at round(0.8 E) unless told otherwise; any other rule defers the
    # loss's weights only when a drw_epoch is given (DRW composes with every loss and rule).
    switch = default_drw_epoch(int(total_epochs)) if rule.deferred and drw_epoch is None else drw_epoch
    if switch is not None:
        if isinstance(switch, bool) or int(switch) != switch or switch < 0:
            raise ConfigError(f"Expected drw_epoch to be a 0-based epoch >= 0 but got {switch!r}")
        if switch >= total_epochs:
            raise ConfigError(
                f"Expected drw_epoch < total_epochs ({total_epochs}) but got {switch}: DRW would never switch on"
            )
        switch = int(switch)

    return ResolvedRule(name=rule.name, sampler=sampler, class_weight=class_weight, drw_epoch=switch)


def _labels_matching(labels: Labels | None, counts: list[int], rule_name: str) -> torch.Tensor:
    # Counts and labels come from the same dataset builder; disagreement is a bug, not a user error.
    if labels is None:
        raise ValueError(f"train rule {rule_name!r} re-samples the data: pass the training labels")
    labels = _check_labels(labels)
    from_labels = torch.bincount(labels, minlength=len(counts)).tolist()
    if from_labels != counts:
        raise ValueError(f"class_counts {counts} do not match the counts of the labels {from_labels}")
    return labels
