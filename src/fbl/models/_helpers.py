"""Small checks and builders shared by the model files (private)."""
from __future__ import annotations

from torch import nn

from fbl.errors import ConfigError


def check_num_classes(num_classes) -> int:
    """Return ``num_classes`` as an int, or raise a one-line :class:`ConfigError`."""
    # bool is an int subclass; ``num_classes=True`` is a mistake, not one class.
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"Expected num_classes to be an integer >= 1 but got {num_classes!r}")
    return num_classes


def no_pretrained_weights(model_name: str, pretrained: bool) -> None:
    """Models trained from scratch in the paper have no weights to load; say so rather than ignore the flag."""
    if pretrained:
        raise ConfigError(f"No pretrained weights exist for {model_name}; build it with pretrained=False")


def fresh_linear(old: nn.Linear, num_classes: int) -> nn.Linear:
    """A new ``nn.Linear`` with ``old``'s input size, device and dtype (the model may already be moved or cast)."""
    num_classes = check_num_classes(num_classes)
    return nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
