"""Small checks and builders shared by the model files (private)."""

from __future__ import annotations

import torch
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


def float32_head(features: torch.Tensor, head):
    """``(features, head(features))`` with low-precision features cast to float32 and autocast off for
    the head (:class:`ForwardWithFeatures` explains why every model's classifier runs in float32)."""
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    with torch.autocast(device_type=features.device.type, enabled=False):
        return features, head(features)


class ForwardWithFeatures:
    """The one call the loops make: ``model(x)`` -> logits, ``model(x, return_features=True)`` ->
    ``(logits, features)``, built from the model's ``forward_features`` and ``forward_head``."""

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits, or ``(logits, features)`` with ``return_features=True``.

        The training and evaluation loops always call this (not the two halves), so DDP's gradient
        hooks and ``torch.compile`` see the whole step. Under autocast the backbone runs in low
        precision but the classifier runs in float32 on the float32 features: it is a tiny share of
        the work, and losses that scale logits (LDAM's s = 30) would magnify bf16 rounding of them.
        """
        features, logits = float32_head(self.forward_features(x), self.forward_head)
        return (logits, features) if return_features else logits


class LinearHead(ForwardWithFeatures):
    """The classifier half of the model contract, shared by every model with an ``fc`` head.

    ``forward_head(f)`` -> logits (or ``f`` itself with ``pre_logits=True``), ``forward`` chains it
    after ``forward_features`` (``return_features=True`` also returns ``f``); ``reset_classifier``
    builds a fresh head, initialised by
    :meth:`init_classifier` (PyTorch's default unless a model overrides it).
    """

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def init_classifier(self, layer: nn.Linear) -> None:
        pass

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised ``num_classes``-way linear layer."""
        self.fc = fresh_linear(self.fc, num_classes)
        self.init_classifier(self.fc)
        self.num_classes = num_classes
