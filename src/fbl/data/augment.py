r"""Batched train-time augmentation of uint8 image tensors: random crop with zero padding, flip, rotation, normalise.

:func:`random_crop_flip` draws, for every sample independently, a crop offset
:math:`(d_y, d_x) \sim \mathcal U\{0..2p\}^2` and a flip with probability 1/2, then returns

.. math:: y_{n,:,i,j} = \tilde x_{n,:,\,d_y+i,\,d_x+j'},\quad j' = W-1-j \text{ if flipped else } j

where :math:`\tilde x` is the image zero-padded by ``p`` on each side. That is the distribution of
torchvision's per-image ``RandomCrop(H, padding=p)`` followed by ``RandomHorizontalFlip()``,
computed for the whole batch with one pad and one gather instead of a Python loop over images.

:func:`apply_rotation` is torchvision's ``RandomRotation(r)`` on PIL images (what RIDE, SADE and
BalPoE add after the crop and flip on CIFAR): an angle :math:`\theta \sim \mathcal U[-r, r]` degrees
per image, a rotation about the image centre :math:`(W/2, H/2)`, nearest neighbour, black where the
rotated image leaves the frame. Output pixel :math:`(i, j)` reads the source pixel
:math:`(\lfloor y \rfloor, \lfloor x \rfloor)` with, for :math:`u = j + \tfrac12 - \tfrac W2` and
:math:`v = i + \tfrac12 - \tfrac H2`,

.. math:: x = u\cos\theta - v\sin\theta + \tfrac W2, \qquad y = u\sin\theta + v\cos\theta + \tfrac H2

(PIL's ``Image.rotate``: pixel centres mapped back into the source image), or 0 when
:math:`(x, y)` falls outside :math:`[0, W) \times [0, H)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fbl.errors import ConfigError


@dataclass(frozen=True)
class AugmentSpec:
    """How one dataset is augmented and normalised; the per-dataset part of the input pipeline.

    Args:
        mean: per-channel mean of the pixels scaled to [0, 1].
        std: per-channel standard deviation, same scale.
        crop_padding: ``p`` of the random crop (zero padding on every side); 0 disables the crop.
        hflip: whether to flip horizontally with probability 1/2.
        rotation: ``r`` of a random rotation by up to ``r`` degrees either way after the crop and flip
            (torchvision's ``RandomRotation(r)``); 0 disables it.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False
    rotation: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) == 0 or len(self.mean) != len(self.std):
            raise ConfigError(f"Expected one mean and one std per channel but got mean={self.mean}, std={self.std}")
        if any(not s > 0 for s in self.std):
            raise ConfigError(f"Expected every std > 0 but got {self.std}")
        if int(self.crop_padding) != self.crop_padding or self.crop_padding < 0:
            raise ConfigError(f"Expected crop_padding to be an integer >= 0 but got {self.crop_padding!r}")
        object.__setattr__(self, "crop_padding", int(self.crop_padding))
        object.__setattr__(self, "hflip", bool(self.hflip))
        object.__setattr__(self, "rotation", check_rotation(self.rotation))

    @property
    def num_channels(self) -> int:
        return len(self.mean)


def crop_flip_params(num: int, padding: int, hflip: bool, generator: torch.Generator):
    """Draw per-sample crop offsets and flips on ``generator``'s device.

    Returns:
        ``(dy, dx, flip)``: int64 offsets in ``0..2*padding`` and a bool flip mask, each of length
        ``num``. Nothing is drawn for a disabled part (offsets stay 0, flips stay False), so turning
        the crop off does not shift the flips' random stream and vice versa.
    """
    device = generator.device
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, num), generator=generator, device=device)
        dy, dx = offsets[0], offsets[1]
    else:
        dy = dx = torch.zeros(num, dtype=torch.int64, device=device)
    if hflip:
        flip = torch.rand(num, generator=generator, device=device) < 0.5
    else:
        flip = torch.zeros(num, dtype=torch.bool, device=device)
    return dy, dx, flip


def apply_crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Crop ``images`` (N×C×H×W) at the given per-sample offsets of the zero-padded image, then flip.

    Zero padding happens on the raw (uint8) pixels, before normalisation, as torchvision pads the
    PIL/uint8 image. Each output pixel reads ``padded[n, c, dy + i, dx + j']``; the (row, column)
    pairs are flattened to one index per pixel so a single ``gather`` does every sample at once
    (several times faster on CPU than 4-D advanced indexing).
    """
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape N x C x H x W but got {tuple(images.shape)}")
    n, c, h, w = images.shape
    device = images.device
    dy, dx, flip = dy.to(device), dx.to(device), flip.to(device)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    padded_w = w + 2 * padding
    rows = dy[:, None] + torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    cols = dx[:, None] + torch.where(flip[:, None], (w - 1) - ar_w, ar_w)
    flat = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(padded.reshape(n, c, -1), 2, flat).reshape(n, c, h, w)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding ``padding``) and horizontal flip of a uint8 batch.

    Args:
        images: N×C×H×W tensor (uint8 in practice) on any device.
        padding: ``p``; offsets are uniform over the :math:`(2p+1)^2` positions. 0 disables the crop.
        hflip: flip each sample with probability 1/2.
        generator: source of the draws; they are made on its device and moved to ``images``'
            device, so a CPU generator gives the same crops whichever device holds the images.

    Returns:
        A new tensor of the same shape and dtype as ``images`` (``images`` itself when nothing is enabled).
    """
    if padding == 0 and not hflip:
        return images
    dy, dx, flip = crop_flip_params(images.shape[0], padding, hflip, generator)
    return apply_crop_flip(images, dy, dx, flip, padding)


def check_rotation(degrees) -> float:
    """``degrees`` as a float in [0, 180] (the largest rotation either way), or a :class:`ConfigError`."""
    if isinstance(degrees, bool) or not isinstance(degrees, (int, float)) or not 0 <= degrees <= 180:
        raise ConfigError(f"Expected a rotation of 0 to 180 degrees but got {degrees!r}")
    return float(degrees)


def rotation_angles(num: int, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """``num`` angles uniform in ``[-degrees, degrees]`` (float64, on ``generator``'s device), one per image."""
    return (torch.rand(num, generator=generator, device=generator.device, dtype=torch.float64) * 2 - 1) * degrees


def apply_rotation(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``images`` (N×C×H×W) by its angle in degrees (see the module doc), zero fill.

    The source position of every output pixel is computed in float64 on the CPU, so a batch is
    rotated the same way on any device; one ``gather`` then reads every sample at once.
    """
    if images.ndim != 4 or angles.shape != (images.shape[0],):
        raise ValueError(
            f"Expected N x C x H x W images and N angles but got {tuple(images.shape)}, {tuple(angles.shape)}"
        )
    n, c, h, w = images.shape
    theta = torch.deg2rad(angles.to("cpu", torch.float64))[:, None, None]
    u = (torch.arange(w, dtype=torch.float64) + 0.5 - w / 2)[None, None, :]
    v = (torch.arange(h, dtype=torch.float64) + 0.5 - h / 2)[None, :, None]
    x = u * theta.cos() - v * theta.sin() + w / 2
    y = u * theta.sin() + v * theta.cos() + h / 2
    inside = ((x >= 0) & (x < w) & (y >= 0) & (y < h)).reshape(n, 1, h * w)
    source = (y.floor().clamp(0, h - 1) * w + x.floor().clamp(0, w - 1)).long().reshape(n, 1, h * w)
    source, inside = source.to(images.device), inside.to(images.device)
    pixels = torch.gather(images.reshape(n, c, h * w), 2, source.expand(n, c, h * w))
    return torch.where(inside, pixels, torch.zeros((), dtype=images.dtype, device=images.device)).reshape(n, c, h, w)


def _scale_shift(
    mean: Sequence[float], std: Sequence[float], num_channels: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    # (x/255 - m)/s == x * (1/(255 s)) + (-m/s): one multiply-add per pixel; constants in float64 first.
    if len(mean) != num_channels or len(std) != num_channels:
        raise ValueError(f"Expected {num_channels} channel means/stds but got mean={tuple(mean)}, std={tuple(std)}")
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * s)).to(torch.float32).view(1, -1, 1, 1).to(device)
    shift = (-m / s).to(torch.float32).view(1, -1, 1, 1).to(device)
    return scale, shift


def _affine(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # copy=True: a float32 input must not be normalised in place.
    return images.to(torch.float32, copy=True).mul_(scale).add_(shift)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    r"""Scale uint8 pixels to [0, 1] and standardise per channel: :math:`(x / 255 - \mu_c) / \sigma_c`, float32."""
    scale, shift = _scale_shift(mean, std, images.shape[1], images.device)
    return _affine(images, scale, shift)
