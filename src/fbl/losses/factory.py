"""A loss built from a run's settings: what ``fbl train`` calls, kept next to the losses it builds."""

from __future__ import annotations

from fbl.errors import ConfigError
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import LOSSES, LossVariant, loss_parameters


def check_loss_options(name: str, options: dict) -> None:
    """Every key of ``options`` must be a keyword the loss's constructor takes (read from its signature)."""
    if not isinstance(options, dict):
        raise ConfigError(f"Expected loss_options to be a mapping of option: value but got {options!r}")
    reserved = {"weight", "class_counts"}
    unknown = sorted(set(options) - (loss_parameters(name) - reserved))
    if unknown:
        raise ConfigError(f"Loss {LOSSES.canonical(name)!r} does not take option(s) {', '.join(unknown)}")


def build_loss(name: str, class_counts, *, settings: dict | None = None, options: dict | None = None) -> LongTailLoss:
    """The loss ``name`` for a training run, unweighted (the train rule assigns ``loss.weight``).

    Args:
        name: a loss or variant name; a variant (``cb-focal``) builds its base loss, and its
            weighting is the train rule's to apply (:func:`~fbl.losses.registry.loss_weighting`).
        class_counts: training samples per class.
        settings: run-level values (``lambda_``, ``schedule``, ``total_epochs``); each loss gets
            those its constructor takes.
        options: loss-specific keywords (``gamma=2``), all of which the loss must take.
    """
    options = dict(options or {})
    check_loss_options(name, options)
    entry = LOSSES.get(name)
    base = entry.base if isinstance(entry, LossVariant) else LOSSES.canonical(name)
    accepted = loss_parameters(base)
    kwargs = {k: v for k, v in (settings or {}).items() if k in accepted and v is not None}
    kwargs.update(options)
    return LOSSES.get(base)(class_counts, **kwargs)
