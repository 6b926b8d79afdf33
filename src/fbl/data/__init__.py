"""Long-tailed datasets (one builder per family, all returning a :class:`LongTailDataset`) and a fast tensor input path.

Importing this package imports every builder module, which registers its builders in :data:`DATASETS`.
"""

# The builder modules are imported for their @register_dataset side effect.
from fbl.data import cifar, digits, image_list_data, shard_data  # noqa: F401
from fbl.data.augment import AugmentSpec, normalize, random_crop_flip
from fbl.data.contract import BatchLoader, LongTailDataset
from fbl.data.dataset import LongTailData
from fbl.data.long_tail import long_tail_counts, long_tail_indices
from fbl.data.registry import DATASETS, build_dataset, list_datasets
from fbl.data.shot_groups import SHOT_THRESHOLDS, shot_groups
from fbl.data.tensor_loader import TensorBatchLoader

__all__ = [
    "DATASETS",
    "AugmentSpec",
    "BatchLoader",
    "LongTailData",
    "LongTailDataset",
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
