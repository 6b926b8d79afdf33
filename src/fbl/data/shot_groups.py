"""Many-, medium- and few-shot class groups, the standard split for reporting long-tailed accuracy.

The protocol of Liu et al. (OLTR, CVPR 2019), used by every paper the Feature-Balanced Loss is
compared with: a class is *many-shot* with more than 100 training images, *medium-shot* with
20 to 100 (inclusive), *few-shot* with fewer than 20.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: ``(medium_min, many_min_exclusive)``: few ``n < 20``, medium ``20 <= n <= 100``, many ``n > 100``.
SHOT_THRESHOLDS = (20, 100)

SHOT_NAMES = ("many", "medium", "few")


def shot_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    r"""Class indices of each shot group, by training count ``n_c``.

    ``many``: :math:`n_c > 100`; ``medium``: :math:`20 \le n_c \le 100`; ``few``: :math:`n_c < 20`.
    Every class is in exactly one group; a group may be empty (e.g. ``few`` on CIFAR-10-LT).

    Example:
        >>> shot_groups([5000, 100, 20, 19])
        {'many': [0], 'medium': [1, 2], 'few': [3]}
    """
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.detach().cpu().reshape(-1).tolist()
    medium_min, many_above = SHOT_THRESHOLDS
    groups: dict[str, list[int]] = {name: [] for name in SHOT_NAMES}
    for cls, n in enumerate(class_counts):
        if n > many_above:
            groups["many"].append(cls)
        elif n >= medium_min:
            groups["medium"].append(cls)
        else:
            groups["few"].append(cls)
    return groups
