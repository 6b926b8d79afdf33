"""Batched random rotation against PIL's nearest-neighbour rotation written out longhand, against torchvision's
``RandomRotation`` itself, and in the training loader."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from fbl.data import AugmentSpec
from fbl.data.augment import apply_rotation, rotation_angles
from fbl.data.tensor_loader import TensorBatchLoader
from fbl.errors import ConfigError
from fbl.seeding import epoch_generator


def longhand_rotation(image, degrees):
    """One image (C×H×W), pixel by pixel: each output pixel centre turned back by the angle about the
    image centre, the source pixel containing it read, black where it falls outside the image."""
    c, h, w = image.shape
    out = torch.zeros_like(image)
    t = math.radians(degrees)
    for i in range(h):
        for j in range(w):
            u, v = j + 0.5 - w / 2, i + 0.5 - h / 2
            x = u * math.cos(t) - v * math.sin(t) + w / 2
            y = u * math.sin(t) + v * math.cos(t) + h / 2
            if 0 <= x < w and 0 <= y < h:
                out[:, i, j] = image[:, math.floor(y), math.floor(x)]
    return out


def test_rotation_matches_longhand_on_a_non_square_batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (6, 3, 9, 12), dtype=torch.uint8, generator=generator)
    angles = torch.tensor([-15.0, -7.3, 0.0, 4.1, 15.0, 90.0], dtype=torch.float64)
    out = apply_rotation(images, angles)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for n in range(len(angles)):
        torch.testing.assert_close(out[n], longhand_rotation(images[n], float(angles[n])), rtol=0, atol=0)


def test_rotation_is_torchvisions_on_pil_images():
    # What RIDE, SADE and BalPoE run: RandomRotation(15) on the PIL image, nearest neighbour, fill 0.
    # PIL maps pixels in 16.16 fixed point, so a pixel on a boundary may round the other way (about 1 in 10,000).
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(1, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=generator)
    angles = rotation_angles(40, 15.0, generator)
    out = apply_rotation(images, angles)
    differing = 0
    for n in range(len(angles)):
        pil = Image.fromarray(images[n].permute(1, 2, 0).numpy())
        reference = TF.rotate(pil, float(angles[n]), interpolation=InterpolationMode.NEAREST, fill=0)
        differing += int((torch.from_numpy(np.array(reference)).permute(2, 0, 1) != out[n]).any(0).sum())
    assert differing <= 40 * 32 * 32 // 2000
    assert int((out == 0).all(1).sum()) > 0  # corners turned out of the frame are black


def test_angles_are_uniform_within_the_bound():
    angles = rotation_angles(20000, 15.0, torch.Generator().manual_seed(2))
    assert angles.dtype == torch.float64 and float(angles.abs().max()) <= 15.0
    assert abs(float(angles.mean())) < 0.2 and abs(float(angles.var()) - 15.0**2 / 3) < 2.0


def test_zero_angle_is_the_identity():
    images = torch.randint(0, 256, (3, 2, 5, 5), dtype=torch.uint8)
    assert torch.equal(apply_rotation(images, torch.zeros(3, dtype=torch.float64)), images)


@pytest.mark.parametrize("degrees", [-1, 180.5, float("nan"), "15", True])
def test_augment_spec_rejects_a_rotation_outside_0_to_180(degrees):
    with pytest.raises(ConfigError, match="Expected a rotation of 0 to 180 degrees"):
        AugmentSpec(mean=(0.5,), std=(0.25,), rotation=degrees)


SPEC = dict(mean=(0.0,), std=(1 / 255,))  # normalisation leaves the pixel values as they are


def _epoch(images, spec, seed=7):
    loader = TensorBatchLoader(images, torch.zeros(len(images)), 8, augment=spec, train=True, seed=seed)
    loader.set_epoch(3)
    return torch.cat([x for x, _ in loader])


def test_loader_rotates_after_the_crop_and_flip_with_angles_drawn_after_theirs():
    images = torch.randint(1, 256, (20, 1, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    cropped = _epoch(images, AugmentSpec(**SPEC, crop_padding=2, hflip=True))
    rotated = _epoch(images, AugmentSpec(**SPEC, crop_padding=2, hflip=True, rotation=15))
    # The epoch's generator draws the order, then the crops and flips, then the angles.
    generator = epoch_generator(7, 3)
    torch.randperm(20, generator=generator)
    torch.randint(0, 5, (2, 20), generator=generator)
    torch.rand(20, generator=generator)
    angles = rotation_angles(20, 15.0, generator)
    expected = apply_rotation(cropped.to(torch.uint8), angles)
    torch.testing.assert_close(rotated, expected.float(), rtol=0, atol=0)


def test_rotation_never_applies_to_evaluation():
    images = torch.randint(1, 256, (9, 1, 6, 6), dtype=torch.uint8)
    loader = TensorBatchLoader(images, torch.zeros(9), 4, augment=AugmentSpec(**SPEC, rotation=30), train=False)
    torch.testing.assert_close(torch.cat([x for x, _ in loader]), images.float(), rtol=0, atol=0)
