"""Name -> model factory registry: ``create_model("resnet32", num_classes=10)``.

Lookup is case-insensitive. A factory takes ``num_classes`` plus its own keyword options; an option
it does not take, an unknown name or a bad ``num_classes`` is a :class:`ConfigError`.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

from fbl.classifiers import CLASSIFIERS
from fbl.errors import ConfigError
from fbl.models._helpers import check_num_classes
from fbl.models.normed_linear import NormedLinear
from fbl.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str, *aliases: str):
    """Function decorator: register a model factory under ``name`` (a second registration is a bug)."""
    return MODELS.decorator(name, *aliases)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is an optional shell-style filter such as ``"resnet*"``."""
    names = MODELS.names()
    if pattern is not None:
        names = fnmatch.filter(names, pattern.lower())
    return names


def create_model(name: str, num_classes: int, *, classifier: str = "linear", **kwargs) -> nn.Module:
    """Build a registered model with a ``num_classes``-way head.

    ``classifier="normed"`` swaps the linear head for a cosine :class:`NormedLinear` (what LDAM expects).
    """
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"Unknown classifier {classifier!r}; choose one of: {', '.join(CLASSIFIERS)}")
    key = MODELS.canonical(name)
    num_classes = check_num_classes(num_classes)
    factory = MODELS.get(key)
    signature = inspect.signature(factory)
    try:
        signature.bind(num_classes, **kwargs)
    except TypeError:
        accepted = [p for p in signature.parameters if p != "num_classes"]
        unknown = sorted(set(kwargs) - set(accepted))
        raise ConfigError(
            f"Model {key!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
        ) from None
    model = factory(num_classes, **kwargs)
    if classifier == "normed":
        model.fc = NormedLinear(model.num_features, num_classes)
    return model
