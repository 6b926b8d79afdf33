"""Name -> loss class registry; lookup is case-insensitive and knows the seed's ``--loss_type`` names.

Besides losses (:func:`register_loss`) the registry holds *variants* (:func:`register_variant`): a
registered loss with some keyword arguments fixed, e.g. ``cb-ce`` = ``ce`` with
``weighting="effective-number"``. Both kinds are listed by :func:`list_losses` and built by
:func:`create_loss`. Underscores and hyphens are interchangeable in names.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple, Type

from fbl.errors import ConfigError

_LOSSES: Dict[str, type] = {}
_ALIASES: Dict[str, str] = {}
_VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def _check_free(key: str) -> None:
    if key in _LOSSES or key in _ALIASES or key in _VARIANTS:
        raise ValueError(f"loss name {key!r} is registered twice")


def register_loss(name: str, *aliases: str):
    """Class decorator: register a loss under ``name`` and optional aliases (e.g. the seed's names)."""

    def wrap(cls: Type) -> Type:
        keys = [_key(k) for k in (name, *aliases)]
        for key in keys:
            _check_free(key)
        _LOSSES[keys[0]] = cls
        for alias in keys[1:]:
            _ALIASES[alias] = keys[0]
        cls.registry_name = keys[0]
        return cls

    return wrap


def register_variant(name: str, base: str, **fixed: Any) -> None:
    """Register ``name`` as loss ``base`` built with the keyword arguments ``fixed``."""
    key, base_key = _key(name), resolve_loss_name(base)
    _check_free(key)
    if base_key in _VARIANTS:
        raise ValueError(f"variant {key!r} must be based on a loss, not on the variant {base_key!r}")
    _VARIANTS[key] = (base_key, dict(fixed))


def resolve_loss_name(name: str) -> str:
    """Canonical registry name of a loss, alias or variant (raises :class:`ConfigError` if unknown)."""
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _LOSSES and key not in _VARIANTS:
        raise ConfigError(f"Unknown loss {name!r}; choose one of: {', '.join(list_losses())}")
    return key


def list_losses() -> list[str]:
    """Canonical names of every registered loss and variant (aliases are not listed)."""
    return sorted([*_LOSSES, *_VARIANTS])


def loss_class(name: str) -> type:
    """The class :func:`create_loss` builds for ``name`` (for a variant, the class of its base loss)."""
    key = resolve_loss_name(name)
    if key in _VARIANTS:
        key = _VARIANTS[key][0]
    return _LOSSES[key]


def create_loss(name: str, class_counts, **kwargs):
    """Build a registered loss: ``create_loss("fbl", counts, lambda_=60.0, total_epochs=200)``.

    For a variant, ``kwargs`` may not contradict the arguments the variant fixes.
    """
    key = resolve_loss_name(name)
    if key in _VARIANTS:
        base, fixed = _VARIANTS[key]
        for arg, value in fixed.items():
            if arg in kwargs and kwargs[arg] != value:
                raise ConfigError(f"Expected {arg}={value!r} or no {arg} for loss {key!r} but got {arg}={kwargs[arg]!r}")
        kwargs = {**kwargs, **fixed}
        key = base
    return _LOSSES[key](class_counts, **kwargs)


def loss_parameters(name: str) -> set[str]:
    """Keyword names the loss ``name`` accepts, including those its base classes take through ``**options``."""
    from fbl.losses.base import LongTailLoss  # base does not import the registry: no cycle

    names = set()
    for cls in loss_class(name).__mro__:
        if not (isinstance(cls, type) and issubclass(cls, LongTailLoss)) or "__init__" not in cls.__dict__:
            continue
        for parameter in inspect.signature(cls.__dict__["__init__"]).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and parameter.name != "self":
                names.add(parameter.name)
    names.discard("class_counts")
    return names
