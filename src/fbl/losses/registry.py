"""Name -> loss class registry; lookup is case-insensitive and knows the seed's ``--loss_type`` names."""
from __future__ import annotations

from typing import Dict, Type

from fbl.errors import ConfigError

_LOSSES: Dict[str, type] = {}
_ALIASES: Dict[str, str] = {}


def register_loss(name: str, *aliases: str):
    """Class decorator: register a loss under ``name`` and optional aliases (e.g. the seed's names)."""

    def wrap(cls: Type) -> Type:
        for key in (name, *aliases):
            key = key.lower()
            if key in _LOSSES or key in _ALIASES:
                raise ValueError(f"loss name {key!r} is registered twice")
        _LOSSES[name.lower()] = cls
        for alias in aliases:
            _ALIASES[alias.lower()] = name.lower()
        cls.registry_name = name.lower()
        return cls

    return wrap


def resolve_loss_name(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        raise ConfigError(f"Unknown loss {name!r}; choose one of: {', '.join(list_losses())}")
    return key


def list_losses() -> list[str]:
    return sorted(_LOSSES)


def loss_class(name: str) -> type:
    return _LOSSES[resolve_loss_name(name)]


def create_loss(name: str, class_counts, **kwargs):
    """Build a registered loss: ``create_loss("fbl", counts, lambda_=60.0, total_epochs=200)``."""
    return loss_class(name)(class_counts, **kwargs)
