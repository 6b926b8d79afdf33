"""Batched crop/flip against the per-image procedure written out longhand, and its distribution."""

import itertools

import numpy as np
import pytest
import torch

from fbl.data import AugmentSpec, normalize, random_crop_flip
from fbl.data.augment import apply_crop_flip, crop_flip_params
from fbl.errors import ConfigError


def longhand_crop_flip(image, dy, dx, flip, padding):
    """One image (C×H×W): zero-pad by ``padding``, take the H×W window at (dy, dx), then mirror it."""
    c, h, w = image.shape
    padded = torch.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    out = padded[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


def all_params(padding):
    return list(itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)))


def test_apply_matches_longhand_for_every_offset_and_flip():
    padding = 2
    params = all_params(padding)
    # Non-square, 3 channels, so a swapped H/W or channel mix-up cannot pass.
    images = torch.randint(
        0, 256, (len(params), 3, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    dy = torch.tensor([p[0] for p in params])
    dx = torch.tensor([p[1] for p in params])
    flip = torch.tensor([p[2] for p in params])
    out = apply_crop_flip(images, dy, dx, flip, padding)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for n, (y0, x0, f) in enumerate(params):
        torch.testing.assert_close(out[n], longhand_crop_flip(images[n], y0, x0, f, padding), rtol=0, atol=0)


def test_random_crop_flip_uses_the_generator_draws():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, 3, True, torch.Generator().manual_seed(5))
    dy, dx, flip = crop_flip_params(64, 3, True, torch.Generator().manual_seed(5))
    for n in range(64):
        expected = longhand_crop_flip(images[n], int(dy[n]), int(dx[n]), bool(flip[n]), 3)
        torch.testing.assert_close(out[n], expected, rtol=0, atol=0)


def _recover_params(out, image, padding):
    """For each output, the (dy, dx, flip) whose longhand crop equals it exactly (must be unique)."""
    params = all_params(padding)
    candidates = torch.stack([longhand_crop_flip(image, *p, padding) for p in params])  # P×C×H×W
    match = (out[:, None] == candidates[None]).flatten(2).all(-1)  # N×P
    assert torch.equal(match.sum(1), torch.ones(len(out), dtype=torch.long)), (
        "an output is not exactly one longhand crop"
    )
    return [params[k] for k in match.int().argmax(1).tolist()]


def test_offsets_uniform_and_flips_fair_per_sample():
    padding, n = 2, 20000
    # A pattern with every pixel distinct and nonzero: each crop/flip gives a different output.
    image = (torch.arange(64, dtype=torch.uint8) + 1).reshape(1, 8, 8)
    out = random_crop_flip(image.expand(n, 1, 8, 8).contiguous(), padding, True, torch.Generator().manual_seed(0))
    params = _recover_params(out, image, padding)

    # One draw per sample, not one per batch: the first 64 samples of one call already differ.
    assert len(set(params[:64])) > 20

    cells = len(all_params(padding))  # 25 offsets x 2 flips
    counts = np.zeros(cells)
    index = {p: i for i, p in enumerate(all_params(padding))}
    for p in params:
        counts[index[p]] += 1
    expected = n / cells
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # 99.9% quantile of chi-square with 49 degrees of freedom: uniform over offsets x flips, jointly.
    assert chi2 < 85.35, chi2
    flip_rate = np.mean([p[2] for p in params])
    assert abs(flip_rate - 0.5) < 0.015  # about 4 standard errors at n = 20000
    assert {p[0] for p in params} == set(range(5)) and {p[1] for p in params} == set(range(5))


def test_disabled_parts_draw_nothing():
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    assert random_crop_flip(images, 0, False, torch.Generator()) is images
    # Flip only: every sample is the image or its mirror, and both occur.
    flipped = random_crop_flip(images, 0, True, torch.Generator().manual_seed(1))
    same = (flipped == images).flatten(1).all(1)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()
    # Crop only: no sample is mirrored (checked with the unique pattern).
    image = (torch.arange(64, dtype=torch.uint8) + 1).reshape(1, 8, 8)
    out = random_crop_flip(image.expand(500, 1, 8, 8).contiguous(), 1, False, torch.Generator().manual_seed(2))
    assert not any(p[2] for p in _recover_params(out, image, 1))


def test_padding_is_zero_in_raw_pixels():
    images = torch.full((4, 3, 5, 5), 200, dtype=torch.uint8)
    out = apply_crop_flip(
        images, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool), 2
    )
    assert out[:, :, :2, :].eq(0).all() and out[:, :, :, :2].eq(0).all() and out[:, :, 2:, 2:].eq(200).all()


def test_normalize_matches_longhand():
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32
    x = images.double() / 255.0
    expected = (x - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-6)


def test_normalize_does_not_modify_float_input():
    images = torch.rand(2, 1, 3, 3) * 255
    before = images.clone()
    normalize(images, (0.5,), (0.25,))
    assert torch.equal(images, before)


def test_normalize_channel_mismatch():
    with pytest.raises(ValueError, match="3 channel"):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), (0.5,), (0.2,))


def test_augment_spec_validation():
    spec = AugmentSpec(mean=[0.5, 0.5], std=[0.1, 0.2], crop_padding=4, hflip=1)
    assert spec.mean == (0.5, 0.5) and spec.hflip is True and spec.num_channels == 2
    with pytest.raises(ConfigError):
        AugmentSpec(mean=(0.5,), std=(0.1, 0.2))
    with pytest.raises(ConfigError):
        AugmentSpec(mean=(0.5,), std=(0.0,))
    with pytest.raises(ConfigError):
        AugmentSpec(mean=(0.5,), std=(0.1,), crop_padding=-1)
