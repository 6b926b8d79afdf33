"""Name -> dataset builder registry; lookup is case-insensitive and knows the ``-lt`` spellings.

Every builder has the signature ``(data_dir, imb_type, imb_factor, rand_number, download)`` and
returns a :class:`~fbl.data.dataset.LongTailData`.
"""
from __future__ import annotations

from typing import Callable, Dict

from fbl.data.cifar import build_cifar10, build_cifar100
from fbl.data.dataset import LongTailData
from fbl.data.digits import build_digits_lt
from fbl.errors import ConfigError

Builder = Callable[..., LongTailData]

_BUILDERS: Dict[str, Builder] = {}
_ALIASES: Dict[str, str] = {}

# Benchmarks of the paper whose loaders are not written yet: known, so the error says "not yet"
# rather than "unknown".
_NOT_YET_SUPPORTED = {
    "imagenet": ("imagenet-lt",),
    "inat": ("inat2018",),
    "place365": ("places-lt",),
}


def register_dataset(name: str, builder: Builder, *aliases: str) -> None:
    """Register ``builder`` under ``name`` and ``aliases``; a name registered twice is a bug."""
    taken = set(_BUILDERS) | set(_ALIASES) | {n for k, a in _NOT_YET_SUPPORTED.items() for n in (k, *a)}
    for key in (name, *aliases):
        if key.lower() in taken:
            raise ValueError(f"dataset name {key.lower()!r} is registered twice")
    _BUILDERS[name.lower()] = builder
    for alias in aliases:
        _ALIASES[alias.lower()] = name.lower()


register_dataset("cifar10", build_cifar10, "cifar10-lt")
register_dataset("cifar100", build_cifar100, "cifar100-lt")
register_dataset("digits-lt", build_digits_lt)


def list_datasets() -> list[str]:
    """Names :func:`build_dataset` can build (aliases not included)."""
    return sorted(_BUILDERS)


def resolve_dataset_name(name: str) -> str:
    """The registered name for ``name`` (any case, alias allowed), or a :class:`ConfigError`."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in _BUILDERS:
        return key
    for canonical, aliases in _NOT_YET_SUPPORTED.items():
        if key == canonical or key in aliases:
            raise ConfigError(f"Dataset {name!r} is not yet supported; available now: {', '.join(list_datasets())}")
    raise ConfigError(f"Unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")


def build_dataset(
    name: str,
    data_dir=None,
    imb_type: str = "exp",
    imb_factor: float = 0.01,
    rand_number: int = 0,
    download: bool = False,
) -> LongTailData:
    """Build a long-tailed dataset by name: ``build_dataset("cifar10", "./data", imb_factor=0.01)``.

    Args:
        name: one of :func:`list_datasets` (case-insensitive; ``cifar10-lt`` / ``cifar100-lt`` accepted).
        data_dir: where the files are (ignored by ``digits-lt``).
        imb_type: ``"exp"`` or ``"step"``.
        imb_factor: ``n_min / n_max`` in (0, 1]; 0.01 is imbalance ratio 100, 1 keeps the set balanced.
        rand_number: seed of the long-tailed subsampling.
        download: fetch missing files where the dataset supports it.
    """
    builder = _BUILDERS[resolve_dataset_name(name)]
    return builder(data_dir=data_dir, imb_type=imb_type, imb_factor=imb_factor, rand_number=rand_number, download=download)
