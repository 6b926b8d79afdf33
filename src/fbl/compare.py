"""``fbl compare``: methods x grid points x seeds, run (resumably), chosen on validation, reported.

Each run gets its own folder ``OUT/<loss>[-<key>=<value>...]-seed<k>``. A folder that holds a
``summary.json`` is finished and skipped; one with ``checkpoints/last.pt`` is resumed; anything
else starts fresh. For each loss, the grid point with the best mean validation metric at the last
epoch is chosen (``--select-on val-top1``, ``val-few``, ...), and its *test* metrics are reported,
so no number that is reported was used to choose it. ``--confirm-seeds`` trains the chosen point on
more seeds after the choice.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fbl.config import check_keys, option_specs, resolve_config
from fbl.engine.trainer import train
from fbl.errors import ConfigError
from fbl.losses import loss_parameters
from fbl.reports import highest_mean, load_run, method_table, write_report

logger = logging.getLogger(__name__)

SELECTABLE = ("top1", "many", "medium", "few")


@dataclass(frozen=True)
class GridRun:
    """One run of the comparison."""

    loss: str
    point: tuple[tuple[str, object], ...]
    seed: int
    folder: Path

    @property
    def label(self) -> str:
        return "-".join([self.loss, *(f"{k}={v}" for k, v in self.point)])


#: Options ``fbl compare`` sets itself for every run: a grid over them would be silently overridden.
SET_BY_COMPARE = {"loss": "--losses", "seed": "--seeds", "out": "--out", "resume": "(resumed automatically)",
                  "overwrite": "(never: finished runs are kept)"}  # fmt: skip


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["lambda_=15,30,60"]`` -> ``{"lambda_": [15, 30, 60]}`` (values read as YAML scalars).

    Keys are option keys (checked, with a suggestion for a misspelt one); a key given twice, or one
    ``fbl compare`` sets itself, is refused.
    """
    import yaml

    grid = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"Expected --grid KEY=V1,V2,... but got {item!r}")
        key, values = (part.strip() for part in item.split("=", 1))
        if key not in option_specs():
            check_keys({key: None}, "--grid")  # one line naming the closest option
        if key in SET_BY_COMPARE:
            raise ConfigError(f"--grid {key} is set by fbl compare itself: use {SET_BY_COMPARE[key]}")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list every value once: --grid {key}=V1,V2,...")
        grid[key] = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values")
    return grid


def _applies(key: str, loss: str) -> bool:
    """Options that only some losses use (declared with a ``loss_setting``, e.g. ``lambda_``) are swept
    for those losses only, so ``--grid lambda_=15,30,60`` does not train CE three times."""
    setting = option_specs()[key].meta["loss_setting"]
    return setting is None or setting in loss_parameters(loss)


def plan(losses: list[str], seeds: list[int], grid: dict[str, list], out: Path) -> list[GridRun]:
    """Every run of the comparison, in the order they are trained."""
    runs = []
    for loss in losses:
        keys = sorted(k for k in grid if _applies(k, loss))
        points = [tuple(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
        for point, seed in itertools.product(points or [()], seeds):
            run = GridRun(loss, point, seed, out)
            runs.append(replace(run, folder=out / f"{run.label}-seed{seed}"))
    return runs


def run_all(runs: list[GridRun], preset: str | None, overrides: dict, progress=None) -> None:
    """Train every run that has not finished; resume the interrupted ones."""
    for index, run in enumerate(runs, 1):
        if (run.folder / "summary.json").is_file():
            logger.info("[%d/%d] %s: finished, skipped", index, len(runs), run.folder.name)
            continue
        values = {**overrides, **dict(run.point), "loss": run.loss, "seed": run.seed, "out": str(run.folder)}
        values["overwrite"] = True  # without a checkpoint there is nothing to resume: start the run afresh
        cfg = resolve_config(preset, overrides=values)
        if (run.folder / "checkpoints" / "last.pt").is_file():
            cfg = cfg.replace(resume=str(run.folder))
            logger.info("[%d/%d] %s: resuming", index, len(runs), run.folder.name)
        else:
            logger.info("[%d/%d] %s: training", index, len(runs), run.folder.name)
        train(cfg, **({"progress": progress} if progress else {}))


def choose(runs: list[GridRun], select_on: str) -> dict[str, tuple]:
    """For each loss, the grid point with the best mean validation ``select_on`` at the last epoch."""
    split, _, metric = select_on.partition("-")
    if split != "val" or metric not in SELECTABLE:
        raise ConfigError(f"Expected --select-on val-<{'|'.join(SELECTABLE)}> but got {select_on!r}")
    scores: dict[str, dict[tuple, list[float]]] = {}
    for run in runs:
        summary = json.loads((run.folder / "summary.json").read_text())
        value = (summary.get("last_val") or {}).get(metric)
        if value is None:
            raise ConfigError(f"{run.folder} has no validation {metric} to select on (trained with --val-split none?)")
        scores.setdefault(run.loss, {}).setdefault(run.point, []).append(value)
    return {loss: highest_mean(points) for loss, points in scores.items()}


def compare(
    preset: str | None, losses: list[str], seeds: list[int], grid: dict[str, list], overrides: dict, out: Path,
    select_on: str = "val-top1", progress=None, confirm_seeds: Sequence[int] = (),
) -> str:  # fmt: skip
    """Run the comparison and write its report; returns the printed summary.

    The grid point is chosen on ``seeds``; ``confirm_seeds`` then trains each loss's chosen point
    on more seeds (the usual protocol: choose with one seed, report the choice over several), and
    the chosen point's test metrics are reported over all its seeds.
    """
    out = Path(out)
    runs = plan(losses, seeds, grid, out)
    run_all(runs, preset, overrides, progress)
    chosen = choose(runs, select_on)
    extra_seeds = [s for s in confirm_seeds if s not in seeds]
    confirmations = [
        run for loss, (point, _) in chosen.items() for run in plan([loss], extra_seeds, {k: [v] for k, v in point}, out)
    ]
    run_all(confirmations, preset, overrides, progress)
    runs = runs + confirmations
    on = ", ".join(map(str, seeds))
    lines = [f"chosen on {select_on} (mean over seeds {on}, last epoch); test metrics of the chosen point:"]
    for loss, (point, score) in chosen.items():
        folders = [r.folder for r in runs if r.loss == loss and r.point == point]
        row = method_table([load_run(f) for f in folders])[0]
        cells = " ".join(
            f"{k} {row[f'{k}_mean']:.2f}" + (f"±{row[f'{k}_std']:.2f}" if row[f"{k}_std"] is not None else "")
            for k in ("top1", "many", "medium", "few")
            if row[f"{k}_mean"] is not None
        )
        label = ", ".join(f"{k}={v}" for k, v in point) or "no grid"
        lines.append(f"  {loss} ({label}; val {score:.2f}; n={row['n']}): {cells}")
    record = {
        loss: {"point": dict(point), "val": score, "chosen_on_seeds": list(seeds), "confirmed_on_seeds": extra_seeds}
        for loss, (point, score) in chosen.items()
    }
    (out / "chosen.json").write_text(json.dumps(record, indent=2))
    html = write_report([r.folder for r in runs], out / "report")
    lines.append(f"report: {html}")
    return "\n".join(lines)
