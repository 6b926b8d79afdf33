"""Per-epoch randomness derived from (seed, epoch): a resumed run needs no saved generator state.

Every random draw of an epoch (shuffle order, sampler draws, augmentation, mixup) comes from a
generator built here. ``SeedSequence`` mixing keeps nearby pairs independent (``seed + epoch``, as
in ``DistributedSampler``, would make seed 1 / epoch 0 replay seed 0 / epoch 1), and ``stream``
separates draws that must not share a generator.
"""

from __future__ import annotations

import numpy as np
import torch

from fbl.errors import ConfigError

#: Streams of one epoch. The data order and augmentation use no stream (the original derivation).
MIXUP_STREAM = 1


def epoch_seed(seed: int, epoch: int, stream: int | None = None) -> int:
    """A 64-bit seed for ``(seed, epoch[, stream])``."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0 or int(epoch) != epoch or epoch < 0:
        raise ConfigError(f"Expected seed >= 0 and epoch >= 0 integers but got seed={seed!r}, epoch={epoch!r}")
    entropy = [int(seed), int(epoch)] + ([] if stream is None else [int(stream)])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def epoch_generator(seed: int, epoch: int, stream: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`epoch_seed`."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))
