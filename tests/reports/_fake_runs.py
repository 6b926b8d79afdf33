"""Hand-written run folders for the report tests: 10 classes, known numbers, old and new formats.

The numbers are chosen by the tests (``HEADLINE``); everything per class is derived from the
seed in an obvious way so that tests can recompute it longhand.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

NUM_CLASSES = 10
BINS = 15
# Exponential-ish long tail: classes 0-3 many (>100), 4-7 medium (20-100), 8-9 few (<20).
CLASS_COUNTS = [500, 300, 180, 110, 90, 60, 40, 25, 15, 8]
GROUPS = {"many": [0, 1, 2, 3], "medium": [4, 5, 6, 7], "few": [8, 9]}
EPOCHS = 4

#: Headline numbers per (method key, seed): top1, many, medium, few, ece at the last epoch.
HEADLINE = {
    ("ce", 1): (70.0, 90.0, 65.0, 40.0, 12.0),
    ("ce", 2): (71.5, 91.0, 66.0, 43.0, 11.0),
    ("ce", 3): (69.0, 89.5, 63.0, 41.0, 13.5),
    ("fbl60", 1): (74.0, 88.0, 72.0, 55.0, 8.0),
    ("fbl60", 2): (75.5, 89.0, 73.5, 57.0, 7.5),
    ("fbl60", 3): (73.0, 87.5, 71.0, 52.0, 9.0),
}
#: Selected-epoch headline = the last-epoch one shifted by this (so the two tables differ).
SELECTED_SHIFT = 1.25


def config(loss: str, seed: int, **overrides) -> dict:
    values = {
        "dataset": "fake-lt",
        "data_dir": "./data",
        "arch": "digits-cnn",
        "loss": loss,
        "lambda_": 60.0,
        "alpha_schedule": "parabolic",
        "train_rule": "none",
        "mixup": False,
        "stage2_from": None,
        "epochs": EPOCHS,
        "lr": 0.1,
        "weight_decay": 2e-4,
        "seed": seed,
        "out": f"runs/{loss}-{seed}",
        "preset": None,
        "workers": 2,
    }
    values.update(overrides)
    return values


def per_class_acc(seed: int, shift: float = 0.0) -> list[float]:
    return [90.0 - 6.0 * c + seed + shift for c in range(NUM_CLASSES)]


def feature_norms(seed: int, base: float) -> list[float]:
    return [base - 0.5 * c + 0.1 * seed for c in range(NUM_CLASSES)]


def calibration(seed: int) -> dict:
    samples = [0.0] * BINS
    confidence = [0.0] * BINS
    hits = [0.0] * BINS
    for k, n in ((14, 60.0 + seed), (12, 25.0), (9, 10.0 + seed), (5, 5.0)):
        samples[k] = n
        confidence[k] = n * (k + 0.5) / BINS
        hits[k] = round(n * (k + 0.5) / BINS * 0.9)
    return {"bin_samples": samples, "bin_confidence": confidence, "bin_hits": hits}


def confusion(seed: int) -> list[list[int]]:
    return [[(10 + seed if i == j else (i + j) % 3) for j in range(NUM_CLASSES)] for i in range(NUM_CLASSES)]


def metrics(numbers: tuple, seed: int, *, new_fields: bool, shift: float = 0.0) -> dict:
    top1, many, medium, few, ece = (v + shift if v is not None else None for v in numbers)
    result = {
        "top1": top1,
        "top5": 99.0,
        "many": many,
        "medium": medium,
        "few": few,
        "ece": ece,
        "per_class_acc": per_class_acc(seed, shift),
        "per_class_feature_norm": feature_norms(seed, 8.0),
    }
    if new_fields:
        result["calibration"] = calibration(seed)
        result["confusion"] = confusion(seed)
    return result


def epoch_records(loss: str, seed: int, *, new_fields: bool) -> list[dict]:
    records = []
    for epoch in range(EPOCHS):
        record = {
            "epoch": epoch,
            "lr": 0.1 / (epoch + 1),
            "alpha": (epoch / EPOCHS) ** 2 if loss == "fbl" else None,
            "train_loss": 2.0 - 0.3 * epoch + 0.01 * seed,
            "train_acc": 40.0 + 10 * epoch,
            "eval": {"top1": 50.0 + 5 * epoch + seed},
            "seconds": 1.0,
        }
        if new_fields:
            record.update(
                {
                    "val": {"top1": 48.0 + 5 * epoch},
                    "train_seconds": 0.8,
                    "eval_seconds": 0.2,
                    "train_images_per_s": 1000.0,
                }
            )
        records.append(record)
    return records


def write_run(
    folder: Path,
    loss: str,
    seed: int,
    numbers: tuple,
    *,
    new_fields: bool = True,
    torn: bool = False,
    extra_shift: float | None = None,
    val_top1: float | None = None,
    **config_overrides,
) -> Path:
    """A run folder as training writes it; ``new_fields=False`` gives the older format.

    ``extra_shift`` adds a ``test_lossless`` extra split whose numbers are the headline's plus it;
    ``val_top1`` gives the run a validation split (``last_val``) with that top-1 at the last epoch.
    """
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(loss, seed, **config_overrides), sort_keys=False))
    lines = [json.dumps(r) for r in epoch_records(loss, seed, new_fields=new_fields)]
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"epoch": 4, "lr": 0.0'  # killed mid-write
    (folder / "metrics.jsonl").write_text(text)
    last = {**metrics(numbers, seed, new_fields=new_fields), "epoch": EPOCHS - 1}
    selected_metrics = metrics(numbers, seed, new_fields=new_fields, shift=SELECTED_SHIFT)
    summary = {
        "last": last,
        "best": {**selected_metrics, "epoch": EPOCHS - 2},
        "best_selected_on": "the evaluation split (the test set)",
        "class_counts": CLASS_COUNTS,
        "groups": GROUPS,
        "run_dir": str(folder),
    }
    if new_fields:
        summary["selected"] = {"epoch": EPOCHS - 2, "on": "val", "val": selected_metrics, "test": selected_metrics}
        summary["train_feature_norms"] = feature_norms(seed, 12.0)
    if extra_shift is not None:
        summary["last_extra"] = {"test_lossless": metrics(numbers, seed, new_fields=new_fields, shift=extra_shift)}
    if val_top1 is not None:
        summary["last_val"] = {**metrics(numbers, seed, new_fields=new_fields), "top1": val_top1}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


def write_two_methods(root: Path, **kwargs) -> list[Path]:
    """ce and fbl (λ=60), three seeds each, under ``root`` (one level of nesting per method)."""
    folders = []
    for (key, seed), numbers in HEADLINE.items():
        loss = "fbl" if key.startswith("fbl") else "ce"
        folders.append(write_run(root / key / f"seed{seed}", loss, seed, numbers, **kwargs))
    return folders


def expert_entry(k: int, seed: int, numbers: tuple) -> dict:
    """One ``summary.json`` ``experts`` entry as training writes it.

    ``numbers``: top1, many, medium, few, worst, then the mean feature norm of many, medium, few.
    """
    top1, many, medium, few, worst, norm_many, norm_medium, norm_few = numbers
    return {
        "expert": k,
        "top1": top1,
        "many": many,
        "medium": medium,
        "few": few,
        "worst": worst,
        "per_class_acc": per_class_acc(seed, shift=-float(k)),
        "per_class_feature_norm": feature_norms(seed, 6.0 + k),
        "feature_norm": {"many": norm_many, "medium": norm_medium, "few": norm_few},
    }


def write_experts_run(
    folder: Path,
    loss: str,
    seed: int,
    numbers: tuple,
    experts: list[tuple],
    *,
    worst: float | None = None,
    arch: str = "digits-experts",
    **config_overrides,
) -> Path:
    """A multi-expert run folder: :func:`write_run` plus ``experts`` (one :func:`expert_entry` per tuple of
    ``experts``) and, when given, the ensemble's worst-class accuracy ``last.worst``."""
    write_run(folder, loss, seed, numbers, arch=arch, **config_overrides)
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["experts"] = [expert_entry(k, seed, values) for k, values in enumerate(experts)]
    if worst is not None:
        summary["last"]["worst"] = worst
    summary_path.write_text(json.dumps(summary, indent=2))
    return folder
