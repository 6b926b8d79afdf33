"""A DataLoader replacement for small image sets held as one uint8 tensor on the training device.

CIFAR-sized data fits in memory many times over, so instead of decoding, augmenting and collating
one image at a time in worker processes, :class:`TensorBatchLoader` keeps the whole uint8 set on
``device`` and builds each batch with a handful of tensor ops (index, crop/flip, normalise).
"""

from __future__ import annotations

import logging

import torch

from fbl.data.augment import (
    AugmentSpec,
    _affine,
    _scale_shift,
    apply_crop_flip,
    apply_rotation,
    crop_flip_params,
    rotation_angles,
)
from fbl.data.sharding import eval_share, shard_order
from fbl.errors import ConfigError
from fbl.seeding import epoch_generator, epoch_seed

logger = logging.getLogger(__name__)


def _sampler_order(sampler) -> torch.Tensor:
    # Samplers may yield Python/numpy ints one by one or index tensors; the conversion runs once
    # per epoch, not per batch.
    items = list(iter(sampler))
    if items and getattr(items[0], "ndim", 0) > 0:
        return torch.cat([torch.as_tensor(i, dtype=torch.int64).reshape(-1) for i in items])
    return torch.tensor([int(i) for i in items], dtype=torch.int64)


class TensorBatchLoader:
    """Batches ``(x, y)`` from an in-memory uint8 image tensor, with reproducible per-epoch randomness.

    The shuffle order and the augmentation of epoch ``e`` come from a CPU ``torch.Generator``
    seeded with :func:`epoch_seed` ``(seed, e)``: resuming at epoch ``e`` gives exactly the batches
    of an uninterrupted run, whatever the device. Call :meth:`set_epoch` before each epoch, as with
    ``DistributedSampler``; iterating twice without it repeats the same epoch.

    Args:
        images: uint8 N×C×H×W; moved to ``device`` once.
        targets: N labels (int64 after conversion).
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        augment: normalisation, and (when ``train``) crop padding, flip and rotation.
        train: shuffle and augment; ``False`` keeps the order and only normalises.
        device: where the data lives and batches are produced.
        seed: base seed of the per-epoch generator.
        sampler: optional object with ``__iter__`` (ints or index tensors), ``__len__`` and
            optionally ``set_epoch``; its order replaces the random permutation.
        drop_last: drop a final incomplete batch.

    Yields:
        ``x``: float32 B×C×H×W, ``(x / 255 - mean) / std``; ``y``: int64 B; both on ``device``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets,
        batch_size: int,
        *,
        augment: AugmentSpec,
        train: bool,
        device="cpu",
        seed: int = 0,
        sampler=None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(
                f"Expected uint8 images of shape N x C x H x W but got {images.dtype} {tuple(images.shape)}"
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ConfigError(f"Expected batch_size to be a positive integer but got {batch_size!r}")
        epoch_seed(seed, 0)  # validates seed
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.targets = torch.as_tensor(targets, dtype=torch.int64).reshape(-1).to(self.device)
        if self.targets.shape[0] != self.images.shape[0]:
            raise ValueError(f"Expected {self.images.shape[0]} targets but got {self.targets.shape[0]}")
        self.batch_size = int(batch_size)
        self.augment = augment
        self.train = bool(train)
        self.seed = int(seed)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.rank, self.world_size = int(rank), int(world_size)
        self._scale, self._shift = _scale_shift(augment.mean, augment.std, self.images.shape[1], self.device)

    @property
    def num_samples(self) -> int:
        """Samples per epoch: the sampler's length if there is one, else the data size."""
        return len(self.sampler) if self.sampler is not None else self.images.shape[0]

    def __len__(self) -> int:
        """Batches per epoch for this process (the global batch count when training distributed)."""
        n = self.num_samples
        if self.world_size > 1 and not self.train:
            n = len(eval_share(n, self.rank, self.world_size))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        epoch_seed(self.seed, epoch)
        self.epoch = int(epoch)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def _order(self, generator: torch.Generator) -> torch.Tensor | None:
        """Indices of this epoch's samples in order; ``None`` means ``0..N-1`` (sliced, not gathered)."""
        if self.sampler is not None:
            order = _sampler_order(self.sampler)
            if order.numel() and (int(order.min()) < 0 or int(order.max()) >= self.images.shape[0]):
                raise ValueError(f"Sampler yielded indices outside 0..{self.images.shape[0] - 1}")
            return order
        if self.train:
            return torch.randperm(self.images.shape[0], generator=generator)
        return None

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        order = self._order(generator)
        total = self.images.shape[0] if order is None else order.shape[0]

        padding, hflip, degrees = self.augment.crop_padding, self.augment.hflip, self.augment.rotation
        augment = self.train and (padding > 0 or hflip)
        rotate = self.train and degrees > 0
        if augment:
            # Drawn for the whole epoch at once: one small host-to-device copy instead of one per batch.
            dy, dx, flip = crop_flip_params(total, padding, hflip, generator)
        if rotate:
            # Drawn after the crops and flips, so a run without rotation keeps its random stream.
            angles = rotation_angles(total, degrees, generator)
        batch_size = self.batch_size
        if self.world_size > 1:
            # This process's share of the global epoch: augmentation is drawn per global position
            # first, so a sample is augmented the same way whatever the number of processes.
            if self.train:
                positions = shard_order(torch.arange(total), self.batch_size, self.rank, self.world_size)
                batch_size = self.batch_size // self.world_size
            else:
                positions = eval_share(total, self.rank, self.world_size)
            order = positions if order is None else order[positions]
            if augment:
                dy, dx, flip = dy[positions], dx[positions], flip[positions]
            if rotate:
                angles = angles[positions]
            total = len(positions)
        if order is not None:
            order = order.to(self.device)
        if augment:
            dy, dx, flip = dy.to(self.device), dx.to(self.device), flip.to(self.device)

        stop = total - total % batch_size if self.drop_last else total
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, total)
            if order is None:
                x, y = self.images[start:end], self.targets[start:end]
            else:
                idx = order[start:end]
                x, y = self.images[idx], self.targets[idx]
            if augment:
                x = apply_crop_flip(x, dy[start:end], dx[start:end], flip[start:end], padding)
            if rotate:
                x = apply_rotation(x, angles[start:end])
            yield _affine(x, self._scale, self._shift), y
