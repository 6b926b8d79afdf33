"""Name -> loss class registry, with the seed's ``--loss_type`` names as aliases.

Besides losses the registry holds *variants*: a registered loss re-weighted by a named class
weighting, e.g. ``cb-focal`` = ``focal`` weighted by the effective number of samples (Cui et al.,
CVPR 2019). Both register on the loss class, where it is defined::

    @register_variant("cb-focal", "effective-number")
    @register_loss("focal")
    class FocalLoss(LongTailLoss): ...

:func:`create_loss` builds either kind; the weight of a variant comes from
:func:`fbl.class_weights.resolve_class_weight`, the resolver the train rule uses in ``fbl train``
(where a variant's weighting is handed to the rule, which owns every class weight of a run).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from fbl.class_weights import WEIGHTINGS, resolve_class_weight
from fbl.errors import ConfigError
from fbl.registry import Registry


@dataclass(frozen=True)
class LossVariant:
    """A registered loss ``base`` whose per-class weight is the named ``weighting`` of the counts."""

    base: str
    weighting: str


LOSSES: Registry[type | LossVariant] = Registry("loss")


def register_loss(name: str, *aliases: str):
    """Class decorator: register a loss under ``name`` and optional aliases (e.g. the seed's names) and set
    its ``registry_name``."""
    register = LOSSES.decorator(name, *aliases)

    def wrap(cls: type) -> type:
        register(cls)
        cls.registry_name = name
        return cls

    return wrap


def register_variant(name: str, weighting: str):
    """Class decorator, placed above :func:`register_loss`: also register ``name`` as that loss weighted by
    ``weighting`` (a name of :data:`fbl.class_weights.WEIGHTINGS`)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r} for loss variant {name!r}")

    def wrap(cls: type) -> type:
        base = getattr(cls, "registry_name", None)
        if base is None or LOSSES.get(base) is not cls:
            raise ValueError(f"variant {name!r} must decorate a registered loss (put @register_loss below it)")
        LOSSES.decorator(name)(LossVariant(base, weighting))
        return cls

    return wrap


def resolve_loss_name(name: str) -> str:
    """Canonical registry name of a loss, alias or variant (raises :class:`ConfigError` if unknown)."""
    return LOSSES.canonical(name)


def list_losses() -> list[str]:
    """Canonical names of every registered loss and variant (aliases are not listed)."""
    return LOSSES.names()


def loss_class(name: str) -> type:
    """The class :func:`create_loss` builds for ``name`` (for a variant, the class of its base loss)."""
    entry = LOSSES.get(name)
    return LOSSES.get(entry.base) if isinstance(entry, LossVariant) else entry


def loss_weighting(name: str) -> str | None:
    """The class weighting a variant fixes (``"effective-number"`` for ``cb-focal``), else ``None``."""
    entry = LOSSES.get(name)
    return entry.weighting if isinstance(entry, LossVariant) else None


def create_loss(name: str, class_counts, **kwargs):
    """Build a registered loss: ``create_loss("fbl", counts, lambda_=60.0, total_epochs=200)``.

    A variant also takes ``beta`` (effective number, default 0.9999) and builds its weight from
    ``class_counts``; it cannot take an explicit ``weight`` as well.
    """
    entry = LOSSES.get(name)
    if isinstance(entry, LossVariant):
        if kwargs.get("weight") is not None:
            raise ConfigError(f"Loss {LOSSES.canonical(name)!r} weights classes by {entry.weighting}; give no weight")
        beta = kwargs.pop("beta", 0.9999)
        kwargs["weight"] = resolve_class_weight(class_counts, loss_weighting=entry.weighting, beta=beta)
        entry = LOSSES.get(entry.base)
    return entry(class_counts, **kwargs)


def loss_parameters(name: str) -> set[str]:
    """Keyword names the loss ``name`` accepts, read from the signatures over its class hierarchy."""
    names = set()
    for cls in loss_class(name).__mro__:
        if "__init__" not in cls.__dict__ or cls.__module__.startswith("torch"):
            continue
        for parameter in inspect.signature(cls.__dict__["__init__"]).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and parameter.name != "self":
                names.add(parameter.name)
    names.discard("class_counts")
    return names
