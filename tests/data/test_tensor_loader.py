"""TensorBatchLoader: order, normalisation, augmentation and per-epoch reproducibility."""

import itertools

import pytest
import torch

from fbl.data import AugmentSpec, TensorBatchLoader
from fbl.errors import ConfigError

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)
PLAIN = AugmentSpec(mean=MEAN, std=STD)
AUGMENTED = AugmentSpec(mean=MEAN, std=STD, crop_padding=2, hflip=True)


def make_images(n=50, h=6, w=6, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def longhand_normalize(images):
    x = images.double() / 255.0
    return (x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(
        1, 3, 1, 1
    )


def collect(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same_batches(a, b):
    pairs = zip(a, b, strict=False)
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in pairs)


def test_eval_loader_is_in_order_and_only_normalised():
    images = make_images(50)
    loader = TensorBatchLoader(images, torch.arange(50), 16, augment=AUGMENTED, train=False)
    batches = collect(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [16, 16, 16, 2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.arange(50))
    torch.testing.assert_close(x.double(), longhand_normalize(images), rtol=0, atol=2e-6)


def test_drop_last():
    loader = TensorBatchLoader(make_images(50), torch.arange(50), 16, augment=PLAIN, train=True, drop_last=True)
    batches = collect(loader)
    assert len(loader) == len(batches) == 3 and all(len(y) == 16 for _, y in batches)


def test_train_epoch_is_a_permutation_without_augmentation():
    images = make_images(50)
    loader = TensorBatchLoader(images, torch.arange(50), 8, augment=PLAIN, train=True)
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])
    assert sorted(y.tolist()) == list(range(50)) and not torch.equal(y, torch.arange(50))
    torch.testing.assert_close(x.double(), longhand_normalize(images[y]), rtol=0, atol=2e-6)


def longhand_candidates(image, padding):
    c, h, w = image.shape
    padded = torch.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    out = []
    for dy, dx, flip in itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)):
        crop = padded[:, dy : dy + h, dx : dx + w]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_train_batches_are_normalised_crops_of_their_images():
    images = make_images(40)
    loader = TensorBatchLoader(images, torch.arange(40), 16, augment=AUGMENTED, train=True, seed=3)
    seen_flips_or_shifts = 0
    for x, y in loader:
        for xi, yi in zip(x, y, strict=False):
            candidates = longhand_normalize(longhand_candidates(images[yi], 2))
            distance = (candidates - xi.double()).abs().flatten(1).amax(1)
            assert float(distance.min()) < 2e-6, "a train sample is not a normalised crop/flip of its image"
            seen_flips_or_shifts += int(distance.argmin()) != 24  # (dy, dx, flip) = (2, 2, False): the identity
    assert seen_flips_or_shifts > 20


def test_same_seed_and_epoch_give_identical_batches():
    images = make_images(50)
    a = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=11)
    b = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=11)
    a.set_epoch(3)
    b.set_epoch(3)
    assert same_batches(collect(a), collect(b))
    assert same_batches(collect(a), collect(a))  # without set_epoch the epoch repeats
    b.set_epoch(4)
    assert not same_batches(collect(a), collect(b))
    c = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=12)
    c.set_epoch(3)
    assert not same_batches(collect(a), collect(c))


def test_resume_reproduces_uninterrupted_run():
    images = make_images(50)
    run = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=0)
    epochs = []
    for epoch in range(4):
        run.set_epoch(epoch)
        epochs.append(collect(run))
    resumed = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=0)
    resumed.set_epoch(2)
    assert same_batches(collect(resumed), epochs[2])
    assert not same_batches(epochs[0], epochs[1])


class ListSampler:
    """A sampler with a fixed per-epoch order (with repeats) that records set_epoch calls."""

    def __init__(self, n, as_tensors=False):
        self.n, self.as_tensors, self.epochs = n, as_tensors, []

    def order(self):
        epoch = self.epochs[-1] if self.epochs else 0
        return [(7 * i + epoch) % self.n for i in range(2 * self.n)]

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return 2 * self.n

    def __iter__(self):
        order = self.order()
        if self.as_tensors:
            return iter(torch.tensor(order).split(9))
        return iter(order)


@pytest.mark.parametrize("as_tensors", [False, True])
def test_sampler_order_is_respected(as_tensors):
    images = make_images(20)
    sampler = ListSampler(20, as_tensors)
    loader = TensorBatchLoader(images, torch.arange(20), 6, augment=PLAIN, train=True, sampler=sampler)
    assert loader.num_samples == 40 and len(loader) == 7
    loader.set_epoch(5)
    assert sampler.epochs == [5]
    y = torch.cat([b[1] for b in loader])
    assert y.tolist() == sampler.order()


def test_sampler_out_of_range():
    sampler = ListSampler(30)
    loader = TensorBatchLoader(make_images(20), torch.arange(20), 6, augment=PLAIN, train=True, sampler=sampler)
    with pytest.raises(ValueError, match="outside"):
        next(iter(loader))


def test_bad_arguments():
    images = make_images(4)
    with pytest.raises(ConfigError, match="batch_size"):
        TensorBatchLoader(images, torch.arange(4), 0, augment=PLAIN, train=True)
    with pytest.raises(ConfigError, match="seed"):
        TensorBatchLoader(images, torch.arange(4), 2, augment=PLAIN, train=True, seed=-1)
    with pytest.raises(ValueError, match="targets"):
        TensorBatchLoader(images, torch.arange(3), 2, augment=PLAIN, train=True)
    with pytest.raises(ValueError, match="uint8"):
        TensorBatchLoader(images.float(), torch.arange(4), 2, augment=PLAIN, train=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    images = make_images(50)
    cpu = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=4)
    gpu = TensorBatchLoader(images, torch.arange(50), 8, augment=AUGMENTED, train=True, seed=4, device="cuda")
    cpu.set_epoch(2)
    gpu.set_epoch(2)
    for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=False):
        assert xg.is_cuda and yg.is_cuda
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)
        assert torch.equal(yg.cpu(), yc)
