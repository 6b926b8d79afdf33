"""Batched colour augmentation (SADE's test-time views) against per-image formulas written out longhand and
against torchvision's own functional transforms."""

import colorsys
import math

import pytest
import torch
import torchvision.transforms.functional as TF

from fbl.data.colour_augment import (
    ADJUSTMENTS,
    JitterDraw,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    colour_jitter,
    gaussian_blur,
    grey,
)

G = torch.Generator().manual_seed(0)
IMAGES = torch.rand(6, 3, 7, 9, generator=G, dtype=torch.float64)
FACTORS = 0.6 + 0.8 * torch.rand(6, generator=G, dtype=torch.float64)
SHIFTS = 0.1 * (2 * torch.rand(6, generator=G, dtype=torch.float64) - 1)


def _grey_longhand(image):
    return 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]


def test_grey_uses_the_luma_weights_pil_uses():
    for n in range(6):
        torch.testing.assert_close(grey(IMAGES)[n, 0], _grey_longhand(IMAGES[n]), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("ours", "blend_with"),
    [
        (adjust_brightness, lambda image: torch.zeros_like(image)),
        (adjust_contrast, lambda image: _grey_longhand(image).mean().expand_as(image)),
        (adjust_saturation, lambda image: _grey_longhand(image).expand_as(image)),
    ],
)
def test_brightness_contrast_saturation_blend_each_image_with_its_own_factor(ours, blend_with):
    out = ours(IMAGES, FACTORS)
    for n in range(6):
        f = float(FACTORS[n])
        expected = (f * IMAGES[n] + (1 - f) * blend_with(IMAGES[n])).clamp(0, 1)
        torch.testing.assert_close(out[n], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("ours", "reference"),
    [(adjust_contrast, TF.adjust_contrast), (adjust_saturation, TF.adjust_saturation), (adjust_hue, TF.adjust_hue)],
)
def test_adjustments_agree_with_torchvision(ours, reference):
    images, values = IMAGES.float(), (SHIFTS if ours is adjust_hue else FACTORS).float()
    out = ours(images, values)
    for n in range(6):
        # torchvision's grey weights are 0.2989/0.587/0.114, PIL's 0.299: a difference below 1e-4.
        torch.testing.assert_close(out[n], reference(images[n], float(values[n])), rtol=0, atol=2e-4)


def test_hue_turns_every_pixel_in_hsv_as_colorsys_does():
    out = adjust_hue(IMAGES, SHIFTS)
    for n in range(6):
        for i in range(7):
            for j in range(9):
                h, s, v = colorsys.rgb_to_hsv(*IMAGES[n, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb((h + float(SHIFTS[n])) % 1.0, s, v)
                torch.testing.assert_close(
                    out[n, :, i, j], torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0
                )


def _blur_longhand(image, sigma):
    c, h, w = image.shape
    radius = math.ceil(3 * sigma)
    weights = [math.exp(-0.5 * (d / sigma) ** 2) for d in range(-radius, radius + 1)]
    weights = [v / sum(weights) for v in weights]
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            total = 0.0
            for a, wa in enumerate(weights):
                for b, wb in enumerate(weights):
                    y = min(max(i + a - radius, 0), h - 1)  # edges extended
                    x = min(max(j + b - radius, 0), w - 1)
                    total = total + wa * wb * image[:, y, x]
            out[:, i, j] = total
    return out


def test_blur_is_a_gaussian_of_each_images_own_sigma_with_edges_extended():
    images = torch.rand(2, 3, 6, 5, generator=G, dtype=torch.float64)
    sigma = torch.tensor([0.7, 0.7], dtype=torch.float64)  # one radius for the batch: the longhand's
    out = gaussian_blur(images, sigma)
    for n in range(2):
        torch.testing.assert_close(out[n], _blur_longhand(images[n], 0.7), rtol=0, atol=1e-12)
    # Per-image sigmas in one batch: each image as if blurred alone (the batch's wider kernel adds weights
    # of e^-22 beyond 3 sigma).
    mixed = gaussian_blur(images, torch.tensor([0.3, 1.5], dtype=torch.float64))
    torch.testing.assert_close(mixed[0], _blur_longhand(images[0], 0.3), rtol=0, atol=1e-8)
    torch.testing.assert_close(mixed[1], _blur_longhand(images[1], 1.5), rtol=0, atol=1e-12)


def test_jitter_draws_are_torchvisions_ranges_and_orders():
    draw = JitterDraw.draw(4000, 0.4, 0.1, 0.8, torch.Generator().manual_seed(1))
    for factor in (draw.brightness, draw.contrast, draw.saturation):
        assert float(factor.min()) >= 0.6 and float(factor.max()) <= 1.4
    assert float(draw.hue.abs().max()) <= 0.1
    assert abs(float(draw.applied.double().mean()) - 0.8) < 0.03
    assert torch.equal(draw.order.sort(dim=1).values, torch.arange(4).expand(4000, 4))
    assert len({tuple(row) for row in draw.order.tolist()}) == 24  # every order occurs


def test_jitter_applies_each_images_adjustments_in_its_own_order():
    n = 6
    draw = JitterDraw(
        applied=torch.tensor([True, True, True, True, False, True]),
        brightness=FACTORS, contrast=FACTORS.flip(0), saturation=FACTORS.roll(1), hue=SHIFTS,
        order=torch.stack([torch.randperm(4, generator=G) for _ in range(n)]),
    )  # fmt: skip
    out = colour_jitter(IMAGES, draw)
    functions = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation}
    functions["hue"] = adjust_hue
    values = {"brightness": draw.brightness, "contrast": draw.contrast, "saturation": draw.saturation, "hue": SHIFTS}
    for i in range(n):
        expected = IMAGES[i : i + 1]
        if draw.applied[i]:
            for index in draw.order[i].tolist():
                name = ADJUSTMENTS[index]
                expected = functions[name](expected, values[name][i : i + 1])
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-12)
