"""Distributed evaluation (2 gloo processes on the CPU) keeps every image's prediction, in split order,
and its sums equal one process's."""

import json

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fbl.data.sharding import eval_share
from fbl.engine.distributed import Distributed
from fbl.engine.evaluate import evaluate_with_predictions

N, COUNTS, BATCH = 11, [30, 12, 4], 3  # 11 images: the two shares differ in size (6 and 5)
LOGITS = torch.randn(N, 3, generator=torch.Generator().manual_seed(7))
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2])
COMPARED = ("top1", "per_class_acc", "worst", "hmean", "gmean", "macro_f1", "test_priors")
IMAGE_IDS = np.arange(N) * 7 - 20  # the pictures' names, e.g. -1 - p for lossless test image p


class _Logits(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_features=False):
        return (x, torch.ones(x.shape[0], 2)) if return_features else x


def _batches(positions):
    logits, labels = LOGITS[positions], LABELS[positions]
    return [(logits[i : i + BATCH], labels[i : i + BATCH]) for i in range(0, len(positions), BATCH)]


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shared = Distributed(rank, world, torch.device("cpu"))
        metrics, predictions = evaluate_with_predictions(
            _Logits(), _batches(eval_share(N, rank, world)), COUNTS, dist=shared, image_ids=IMAGE_IDS
        )
        with open(f"{out}/rank{rank}.json", "w") as handle:
            columns = {k: getattr(predictions, k).tolist() for k in ("index", "label", "prediction", "image")}
            json.dump({"metrics": {k: metrics[k] for k in COMPARED}, **columns}, handle)
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_the_predictions_of_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    alone, predictions = evaluate_with_predictions(_Logits(), _batches(torch.arange(N)), COUNTS)
    assert predictions.index.tolist() == list(range(N))
    assert predictions.prediction.tolist() == LOGITS.argmax(dim=1).tolist()
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["index"] == list(range(N))
        assert result["image"] == IMAGE_IDS.tolist()  # each name on its own image, once the shares are gathered
        assert result["label"] == LABELS.tolist()
        assert result["prediction"] == predictions.prediction.tolist()
        assert result["metrics"] == json.loads(json.dumps({k: alone[k] for k in COMPARED}))
    assert np.array_equal(predictions.label, LABELS.numpy())
