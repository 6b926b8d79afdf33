"""One name -> object registry for every kind of plug-in: losses, models, datasets, schedules, train rules.

Names are matched after normalisation (case, surrounding spaces, and ``_`` / `` `` read as ``-``), so
``--loss cross_entropy``, ``--arch digits_cnn`` and ``--alpha-schedule parabolic_clamped`` all
resolve. A name registered twice is a bug (``ValueError``); an unknown name is the user's mistake
(:class:`~fbl.errors.ConfigError` listing the valid names and suggesting the closest).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fbl.errors import ConfigError

T = TypeVar("T")


def normalize_name(name: object) -> str:
    """The lookup key of ``name``: ``" Parabolic_Clamped "`` -> ``"parabolic-clamped"``."""
    return "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


class Registry(Generic[T]):
    """Canonical names and aliases mapped to objects of one kind.

    Example:
        >>> schedules = Registry("alpha schedule")
        >>> @schedules.decorator("parabolic")
        ... def parabolic(epoch, total_epochs):
        ...     return (epoch / total_epochs) ** 2
        >>> schedules.canonical("PARABOLIC")
        'parabolic'
        >>> schedules.canonical("parabolc")
        Traceback (most recent call last):
        ...
        fbl.errors.ConfigError: Unknown alpha schedule 'parabolc' (did you mean 'parabolic'?); choose one of: parabolic
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._display: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, *aliases: str) -> T:
        """Register ``item`` under ``name`` (listed as given) and ``aliases`` (accepted, not listed)."""
        keys = [normalize_name(k) for k in (name, *aliases)]
        for key in keys:
            if key in self:
                raise ValueError(f"{self.kind} name {key!r} is registered twice")
        self._items[keys[0]] = item
        self._display[keys[0]] = str(name).strip()
        for alias in keys[1:]:
            self._aliases[alias] = keys[0]
        return item

    def decorator(self, name: str, *aliases: str) -> Callable[[T], T]:
        """``@registry.decorator("name", *aliases)``: register the decorated function or class where it is
        defined; how every kind of plug-in registers (directly, or through a kind's own decorator built
        on this one, such as ``register_loss`` which also sets ``registry_name``)."""

        def wrap(item: T) -> T:
            return self.register(name, item, *aliases)

        return wrap

    def __contains__(self, name: object) -> bool:
        key = normalize_name(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Canonical names as registered, sorted (aliases are not listed)."""
        return sorted(self._display.values())

    def canonical(self, name: object) -> str:
        """The registered name for ``name`` (any spelling or alias), or a one-line :class:`ConfigError`."""
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key in self._items:
            return self._display[key]
        valid = ", ".join(self.names())
        close = difflib.get_close_matches(key, [*self._items, *self._aliases], n=1)
        hint = f" (did you mean {self._display[self._aliases.get(close[0], close[0])]!r}?)" if close else ""
        raise ConfigError(f"Unknown {self.kind} {name!r}{hint}; choose one of: {valid}")

    def get(self, name: object) -> T:
        """The object registered for ``name``."""
        return self._items[normalize_name(self.canonical(name))]
