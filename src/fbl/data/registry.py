"""Name -> dataset builder registry; lookup is case-insensitive and knows the ``-lt`` spellings.

Every builder takes keyword options (the subset of :func:`build_dataset`'s it needs) and returns a
:class:`~fbl.data.contract.LongTailDataset`. A builder registers where it is defined, with
``@register_dataset("name", *aliases)``; ``fbl.data`` imports every builder module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from fbl.data.contract import LongTailDataset
from fbl.errors import ConfigError
from fbl.registry import Registry

Builder = Callable[..., LongTailDataset]

DATASETS: Registry[Builder] = Registry("dataset")


def register_dataset(name: str, *aliases: str) -> Callable[[Builder], Builder]:
    """Function decorator: register a builder under ``name`` and ``aliases``; a name registered twice is a bug."""
    return DATASETS.decorator(name, *aliases)


def list_datasets() -> list[str]:
    """Names :func:`build_dataset` can build (aliases not included)."""
    return DATASETS.names()


def resolve_dataset_name(name: str) -> str:
    """The registered name for ``name`` (any case, alias allowed), or a :class:`ConfigError`."""
    return DATASETS.canonical(name)


def build_dataset(name: str, data_dir=None, **options) -> LongTailDataset:
    """Build a long-tailed dataset by name: ``build_dataset("cifar10", data_dir="./data", imb_factor=0.01)``.

    Each builder takes the options it needs (read from its signature) and ignores the rest, so the
    trainer passes one set of data options to every dataset:

    Args:
        name: one of :func:`list_datasets` (case-insensitive; ``cifar10-lt`` / ``cifar100-lt`` accepted).
        data_dir: where the files (or split lists) are (ignored by ``digits-lt``).
        img_path: image root of datasets given as split lists.
        imb_type: ``"exp"`` or ``"step"``.
        imb_factor: ``n_min / n_max`` in (0, 1]; 0.01 is imbalance ratio 100, 1 keeps the set balanced.
        rand_number: seed of the long-tailed subsampling.
        download: fetch missing files where the dataset supports it.
        rotate: largest random rotation of a training image in degrees (in-memory datasets only).
    """
    builder = DATASETS.get(name)
    options["data_dir"] = data_dir
    accepted = inspect.signature(builder).parameters
    if options.get("rotate") and "rotate" not in accepted:
        raise ConfigError(
            f"--rotate applies to the datasets held in memory (cifar10, cifar100, digits-lt), not {name!r}, "
            "whose training images get the paper's random-resized crop and flip"
        )
    return builder(**{key: value for key, value in options.items() if key in accepted})
