"""`make demo`: CE and FBL on the embedded digits-lt, side by side, in well under two minutes."""

from __future__ import annotations

from pathlib import Path

from fbl.config import resolve_config
from fbl.engine.progress import Progress, no_progress
from fbl.engine.trainer import train

METHODS = {"CE": "ce", "FBL": "fbl"}


def run_demo(out: str = "runs/demo", epochs: int | None = None, progress: Progress = no_progress) -> str:
    """Train each method with the digits-lt preset; return the many/medium/few comparison table."""
    rows = {}
    for label, loss in METHODS.items():
        overrides = {"loss": loss, "quiet": True, "overwrite": True, "out": str(Path(out) / loss)}
        if epochs is not None:
            overrides["epochs"] = epochs
        summary = train(resolve_config("digits-lt", overrides=overrides), progress=progress)
        rows[label] = summary
    return format_demo(rows)


def format_demo(rows: dict) -> str:
    first = next(iter(rows.values()))
    counts = first["class_counts"]
    groups = first["groups"]
    lines = [
        f"digits-lt: {sum(counts)} training images, class counts {counts}",
        "groups by training count: " + ", ".join(f"{g} {len(m)} classes" for g, m in groups.items()),
        "",
        f"{'method':8}{'top1':>8}{'many':>8}{'medium':>8}{'few':>8}{'few ||f||':>11}   (last epoch, test split)",
    ]
    for label, summary in rows.items():
        last = summary["last"]
        norms = [last["per_class_feature_norm"][c] for c in groups["few"]]
        few_norm = sum(norms) / len(norms) if norms else None
        cells = [last["top1"], last["many"], last["medium"], last["few"]]
        text = "".join(f"{v:8.2f}" if v is not None else f"{'-':>8}" for v in cells)
        text += f"{few_norm:11.2f}" if few_norm is not None else f"{'-':>11}"
        lines.append(f"{label:8}{text}")
    lines.append("")
    lines.append("run folders: " + ", ".join(summary["run_dir"] for summary in rows.values()))
    return "\n".join(lines)
