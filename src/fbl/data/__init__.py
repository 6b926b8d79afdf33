"""Long-tailed datasets (one builder per family, all returning :class:`LongTailData`) and a fast tensor input path."""

from fbl.data.augment import AugmentSpec, normalize, random_crop_flip
from fbl.data.dataset import LongTailData
from fbl.data.long_tail import long_tail_counts, long_tail_indices
from fbl.data.registry import DATASETS, build_dataset, list_datasets
from fbl.data.shot_groups import SHOT_THRESHOLDS, shot_groups
from fbl.data.tensor_loader import TensorBatchLoader

__all__ = [
    "DATASETS",
    "AugmentSpec",
    "LongTailData",
    "SHOT_THRESHOLDS",
    "TensorBatchLoader",
    "build_dataset",
    "list_datasets",
    "long_tail_counts",
    "long_tail_indices",
    "normalize",
    "random_crop_flip",
    "shot_groups",
]
