"""The data a run was trained on, as recorded in its ``summary.json``, and the check that ``fbl eval`` has it.

A model's output ``j`` means class ``j`` of the data it was trained on. ``fbl eval`` rebuilds the data
from the run's config (or ``--data-dir``); a tree whose class folders were renamed or swapped, another
long-tail draw, or another dataset would be evaluated silently with the wrong meaning for every output.
So the summary records the class names (where the dataset has them) and the training images per
class, and evaluation refuses, in one line naming the first difference, data that does not match.
"""

from __future__ import annotations

import json
from pathlib import Path

from fbl.data import LongTailDataset
from fbl.engine.run_folder import RunFolder
from fbl.errors import ConfigError


def data_record(data: LongTailDataset) -> dict:
    """``{"class_counts": [...], "class_names": [...]}`` of ``data`` (names only where the dataset has them)."""
    record = {"class_counts": list(data.class_counts)}
    names = getattr(data, "class_names", None)  # both families have names; the contract does not require them
    if names is not None:
        record["class_names"] = [str(name) for name in names]
    return record


def recorded_summary(checkpoint: Path) -> dict | None:
    """The ``summary.json`` of ``checkpoint``'s run folder; ``None`` when the run has none (unfinished, or a
    bare checkpoint file)."""
    if checkpoint.parent.name != "checkpoints":
        return None
    summary_path = RunFolder(checkpoint.parent.parent, writer=False).summary_path
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"could not read {summary_path} ({type(exc).__name__})") from None
    return summary if isinstance(summary, dict) else None


def recorded_data(summary: dict | None) -> dict | None:
    """The data record (class counts and names) in a run's summary; ``None`` without a summary."""
    if summary is None:
        return None
    return {key: summary[key] for key in ("class_counts", "class_names") if key in summary}


def check_trained_on(data: LongTailDataset, record: dict, source: str) -> None:
    """Raise a one-line ConfigError naming the first difference between ``data`` and ``record``."""
    now = data_record(data)
    counts = record.get("class_counts")
    advice = f"is the data folder the one {source} was trained on?"
    if counts is not None and len(counts) != data.num_classes:
        raise ConfigError(
            f"{source} was trained on {len(counts)} classes, the {data.name} data here has {data.num_classes}; "
            + advice
        )
    names = record.get("class_names")
    if names is not None and "class_names" in now and list(names) != now["class_names"]:
        index = next(i for i, (a, b) in enumerate(zip(names, now["class_names"], strict=False)) if a != b)
        raise ConfigError(
            f"class {index} of {source} is {names[index]!r}, in the data here it is {now['class_names'][index]!r}; "
            + advice
        )
    if counts is not None and list(counts) != now["class_counts"]:
        index = next(i for i, (a, b) in enumerate(zip(counts, now["class_counts"], strict=False)) if a != b)
        raise ConfigError(
            f"class {index} of {source} had {counts[index]} training images, in the data here it has "
            f"{now['class_counts'][index]}; " + advice
        )
