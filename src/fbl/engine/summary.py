"""What a finished run reports: the headline (last epoch), the selected epoch, and how it was selected.

The reported split is ``test`` (iNaturalist 2018 has none: its ``val`` list). The selected epoch is
chosen on ``val`` where that is not the reported split, else on the reported split itself, and the
summary says which. The summary also records the data the run was trained on (class names and
training images per class), which ``fbl eval`` checks the data it rebuilds against.
"""

from __future__ import annotations

from fbl.engine.trained_on import data_record

SELECTION_NOTES = {
    ("test", "val"): "the validation split",
    ("test", "test"): "the test set (this run has no validation split; use it for the last epoch only)",
    ("val", "val"): "the val list, which is also the reported split (the dataset has no test list)",
}


def reported_and_selected_splits(eval_splits) -> tuple[str, str]:
    """``(report_on, select_on)`` for a dataset with these evaluation splits."""
    report_on = "test" if "test" in eval_splits else "val"
    return report_on, "val" if "val" in eval_splits else report_on


def best_by_split(best: dict | None) -> dict | None:
    """Checkpoints of format 1 before validation splits held the selected test metrics flat."""
    if best is None or "test" in best:
        return best
    return {"epoch": best["epoch"], "test": {k: v for k, v in best.items() if k != "epoch"}}


def build_summary(last: dict, best: dict, train_split: dict, *, epochs: int, data, run_dir) -> dict:
    """Metrics of the reported split at the last epoch (the headline) and at the selected epoch, labelled."""
    report_on, select_on = reported_and_selected_splits(last)
    return {
        "reported_on": report_on,
        "last": {**last[report_on], "epoch": epochs - 1},
        "selected": {"epoch": best["epoch"], "on": select_on, **{k: v for k, v in best.items() if k != "epoch"}},
        "best": {**best[report_on], "epoch": best["epoch"]},
        "best_selected_on": SELECTION_NOTES[report_on, select_on],
        "last_val": last.get("val"),
        "last_extra": {split: m for split, m in last.items() if split not in (report_on, "val", "test")},
        "train_feature_norms": train_split["per_class_feature_norm"],
        "train_per_class_acc": train_split["per_class_acc"],
        **data_record(data),  # class_counts and class_names: what fbl eval checks the data against
        "groups": dict(data.groups),
        "run_dir": str(run_dir),
    }
