"""Name -> loss class registry, with the seed's ``--loss_type`` names as aliases.

Besides losses (:func:`register_loss`) the registry holds *variants* (:func:`register_variant`): a
registered loss re-weighted by a named class weighting, e.g. ``cb-focal`` = ``focal`` weighted by
the effective number of samples (Cui et al., CVPR 2019). :func:`create_loss` builds either kind; in
``fbl train`` a variant's weighting is handed to the train rule, which owns every class weight.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from fbl.class_weights import WEIGHTINGS, weights_for
from fbl.errors import ConfigError
from fbl.registry import Registry


@dataclass(frozen=True)
class LossVariant:
    """A registered loss ``base`` whose per-class weight is the named ``weighting`` of the counts."""

    base: str
    weighting: str


LOSSES: Registry[type | LossVariant] = Registry("loss")


def register_loss(name: str, *aliases: str):
    """Class decorator: register a loss under ``name`` and optional aliases (e.g. the seed's names)."""

    def wrap(cls: type) -> type:
        LOSSES.register(name, cls, *aliases)
        cls.registry_name = name
        return cls

    return wrap


def register_variant(name: str, base: str, weighting: str) -> None:
    """Register ``name`` as loss ``base`` weighted by ``weighting`` (a name of :data:`fbl.class_weights.WEIGHTINGS`)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r} for loss variant {name!r}")
    if isinstance(LOSSES.get(base), LossVariant):
        raise ValueError(f"variant {name!r} must be based on a loss, not on the variant {base!r}")
    LOSSES.register(name, LossVariant(LOSSES.canonical(base), weighting))


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
        kwargs["weight"] = weights_for(entry.weighting, class_counts, beta)
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
