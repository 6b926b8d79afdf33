from __future__ import annotations

import torch

from fbl.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; a GPU that is not there is a user error."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"Unknown device {spec!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= available:
            raise ConfigError(
                f"Device {spec} was requested but this machine has {available} CUDA device(s); use --device cpu"
            )
    elif device.type != "cpu":
        raise ConfigError(f"Unsupported device {spec!r}; use cpu, cuda, cuda:N or auto")
    return device
