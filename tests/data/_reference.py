"""The CIFAR-LT reference's subsampling, written out longhand once for the data tests."""

import numpy as np


def reference_indices(targets, counts, seed):
    """Seed the global numpy RNG once, then per class (ascending) shuffle its positions and keep the head."""
    np.random.seed(seed)
    targets_np = np.array(targets, dtype=np.int64)
    kept = []
    for the_class, the_img_num in zip(np.unique(targets_np), counts, strict=False):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        kept.append(idx[:the_img_num])
    return np.concatenate(kept)
