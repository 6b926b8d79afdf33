r"""Batched colour augmentation of RGB images in [0, 1]: torchvision's ``ColorJitter``, ``RandomGrayscale`` and
a Gaussian blur, each image with its own random parameters (the views of SADE's test-time aggregation, which
are MoCo v2's: Chen et al., 2020).

For an image :math:`x` (3×H×W, values in [0, 1]) with grey level :math:`g(x) = 0.299 R + 0.587 G + 0.114 B`:

- brightness :math:`b`: :math:`\mathrm{clip}(b x)`;
- contrast :math:`c`: :math:`\mathrm{clip}(c x + (1 - c) \bar g)`, :math:`\bar g` the mean grey level of the image;
- saturation :math:`s`: :math:`\mathrm{clip}(s x + (1 - s) g(x))`;
- hue :math:`h`: the hue of every pixel turned by :math:`h` (a fraction of the colour circle) in HSV;
- grey: :math:`g(x)` in all three channels;
- blur :math:`\sigma`: a separable Gaussian of standard deviation :math:`\sigma` pixels (radius
  :math:`\lceil 3\sigma \rceil`), edges extended.

where :math:`\mathrm{clip}` keeps [0, 1]. These are torchvision's tensor definitions; on PIL images (what SADE
runs) each step also rounds to 8 bits, and PIL's ``GaussianBlur`` approximates the Gaussian with box filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: ITU-R 601-2 luma weights (PIL's ``convert("L")`` and torchvision's ``rgb_to_grayscale``).
GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: Order of the jitter's four adjustments in a :class:`JitterDraw` ``order`` row.
ADJUSTMENTS = ("brightness", "contrast", "saturation", "hue")


def _per_image(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.to(images.device, images.dtype).view(-1, 1, 1, 1)


def grey(images: torch.Tensor) -> torch.Tensor:
    """The grey level of every pixel, N×1×H×W."""
    r, g, b = images.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_image(factor, images)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, grey(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, grey(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turn every pixel's hue by ``shift`` (per image, in [-0.5, 0.5]) through HSV and back."""
    r, g, b = images.unbind(1)
    value, _ = images.max(dim=1)
    low, _ = images.min(dim=1)
    chroma = value - low
    saturation = chroma / torch.where(value > 0, value, torch.ones_like(value))
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = torch.remainder(hue + _per_image(shift, images)[:, 0], 1.0)
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    sector = sector.long() % 6
    # Per sector of the colour circle, which of (v, q, p, t) each channel takes.
    choices = torch.stack([value, q, p, t])
    table = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=images.device)
    picks = table[sector]  # N×H×W×3
    return torch.gather(choices, 0, picks.permute(3, 0, 1, 2)).permute(1, 0, 2, 3)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own standard deviation ``sigma`` (pixels; per image), edges extended."""
    n, c, h, w = images.shape
    sigma = sigma.to(images.device, torch.float64)
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float64)
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(images.dtype).repeat_interleave(c, 0)  # (N·C)×K
    flat = images.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernels[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernels[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


@dataclass(frozen=True)
class JitterDraw:
    """One batch's colour-jitter parameters, per image: whether it is jittered, the factors, the order."""

    applied: torch.Tensor  # bool N
    brightness: torch.Tensor  # N
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: torch.Tensor  # N×4, a permutation of range(4) (indices into ADJUSTMENTS) per image

    @classmethod
    def draw(cls, num: int, strength: float, hue: float, p: float, generator: torch.Generator) -> JitterDraw:
        """``ColorJitter(strength, strength, strength, hue)`` applied with probability ``p``, for ``num`` images."""
        applied = torch.rand(num, generator=generator) < p
        factors = 1 - strength + 2 * strength * torch.rand(3, num, generator=generator)
        shifts = hue * (2 * torch.rand(num, generator=generator) - 1)
        order = torch.rand(num, 4, generator=generator).argsort(dim=1)
        return cls(applied, factors[0], factors[1], factors[2], shifts, order)


def colour_jitter(images: torch.Tensor, draw: JitterDraw) -> torch.Tensor:
    """Apply ``draw``: each jittered image gets its four adjustments in its own order."""
    adjust = {
        "brightness": (adjust_brightness, draw.brightness),
        "contrast": (adjust_contrast, draw.contrast),
        "saturation": (adjust_saturation, draw.saturation),
        "hue": (adjust_hue, draw.hue),
    }
    applied = draw.applied.to(images.device)
    order = draw.order.to(images.device)
    out = images
    for step in range(len(ADJUSTMENTS)):
        for index, name in enumerate(ADJUSTMENTS):
            chosen = applied & (order[:, step] == index)
            if bool(chosen.any()):
                function, values = adjust[name]
                out = torch.where(chosen.view(-1, 1, 1, 1), function(out, values), out)
    return out
