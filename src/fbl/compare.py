"""``fbl compare``: methods x grid points x seeds, run (resumably), chosen on validation, reported.

Each run gets its own folder ``OUT/<loss>[-<key>=<value>...]-seed<k>`` (characters other than
letters, digits and ``._-=+,`` are percent-encoded, so a grid value can never name a folder outside
``OUT``). Everything is checked before the first run trains: the seeds and losses, ``--select-on``
and that every run has a validation split to choose on, the folders, and what each folder already
holds. A folder that holds a run trained with the configuration asked for now is kept: finished
(``summary.json``), it is skipped; interrupted (``checkpoints/last.pt``), it is resumed. A run trained
with another configuration (``--epochs 2`` then ``--epochs 4``) is refused in one line naming the
first option that differs, or, with ``--overwrite``, trained again (fbl's files only are replaced).

A loss that trains a multi-expert model (its class says ``needs_experts``: ``ride``, ``sade``,
``balpoe``, ``fbl-experts``) starts from its *method preset* ``<preset>-<loss>`` (``cifar10-lt`` +
``ride`` -> ``cifar10-lt-ride``: the paper's model, loss options and schedule) instead of the preset
itself; the command's other train flags, then the grid point, still win. Without such a preset the run
needs a multi-expert ``--arch`` (from the flags or the preset), else the comparison stops in one line.

For each loss, the grid point with the best mean validation metric at the last epoch is chosen
(``--select-on val-top1``, ``val-few``, ...), and its *test* metrics are reported, so no number that
is reported was used to choose it. ``--confirm-seeds`` trains the chosen point on more seeds after
the choice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fbl.atomic_files import check_writable_folder, write_atomic
from fbl.config import (
    TrainConfig,
    check_keys,
    config_from_dict,
    list_presets,
    load_preset,
    option_applies,
    option_specs,
    resolve_config,
    runtime_keys,
    starting_preset,
)
from fbl.data.validation_split import validation_size
from fbl.engine.checkpoint import load_checkpoint
from fbl.engine.data_paths import DATA_PATH_KEYS, absolute_path
from fbl.engine.run_folder import RunFolder
from fbl.engine.trainer import train
from fbl.errors import ConfigError
from fbl.losses import LOSSES, loss_class
from fbl.models import MODELS
from fbl.models.multi_expert_resnet import MULTI_EXPERT_ARCHS
from fbl.reports import highest_mean, load_run, method_table, report_folder, write_report

logger = logging.getLogger(__name__)

SELECTABLE = ("top1", "many", "medium", "few")
#: Characters a run folder's name keeps as they are; every other byte is written %XX.
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-=+,")
#: Longer names are cut and end in a hash of the whole name (file systems allow 255 bytes).
MAX_NAME = 200
#: Options that do not change what a run computes (where it is written, how it was named or started):
#: a kept run may differ in them. ``preset`` only names where the values came from; the values count.
BOOKKEEPING = frozenset({"out", "resume", "overwrite", "quiet", "start_epoch", "preset", "root_log", "exp_str"})


def folder_name(label: str) -> str:
    """``label`` as one folder name: letters, digits and ``._-=+,`` kept, any other byte ``%XX``.

    ``%`` itself is encoded, so two labels never share a name; a leading ``.`` is encoded too, so a
    name is never ``..`` nor hidden.
    """
    name = "".join(c if c in NAME_CHARACTERS else "".join(f"%{b:02X}" for b in c.encode()) for c in label)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 17]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return name


@dataclass(frozen=True)
class GridRun:
    """One run of the comparison."""

    loss: str
    point: tuple[tuple[str, object], ...]
    seed: int
    folder: Path

    @property
    def label(self) -> str:
        return "-".join([self.loss, *(f"{k}={format_value(v)}" for k, v in self.point)])


#: Options ``fbl compare`` sets itself for every run: a grid over them would be silently overridden.
SET_BY_COMPARE = {"loss": "use --losses", "seed": "use --seeds", "out": "use --out",
                  "resume": "interrupted runs are resumed automatically",
                  "overwrite": "pass --overwrite to retrain runs whose configuration changed"}  # fmt: skip


def _top_level_items(values: str) -> list[str]:
    """``"[15,30,60],[30,60,120]"`` -> ``["[15,30,60]", "[30,60,120]"]``: commas inside brackets stay."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(values):
        depth += {"[": 1, "]": -1}.get(c, 0)
        if depth < 0:
            raise ConfigError(f"Unbalanced ']' in --grid values {values!r}")
        if c == "," and depth == 0:
            items.append(values[start:i])
            start = i + 1
    if depth:
        raise ConfigError(f"Unbalanced '[' in --grid values {values!r}")
    return [*items, values[start:]]


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def format_value(value) -> str:
    """A grid value as labels and folder names show it: ``30``, or ``15,30,60`` for a list-valued point."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["lambda_=15,30,60"]`` -> ``{"lambda_": [15, 30, 60]}`` (values read as YAML; a bracketed value is
    one list-valued point: ``expert_lambdas=[15,30,60],[30,60,120]`` sweeps two sets of strengths).

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
            raise ConfigError(f"--grid {key} is set by fbl compare itself: {SET_BY_COMPARE[key]}")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list every value once: --grid {key}=V1,V2,...")
        # a list value becomes a tuple: grid points are compared and used as keys
        grid[key] = [_hashable(yaml.safe_load(v)) for v in _top_level_items(values) if v.strip()]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values")
    return grid


def plan(losses: list[str], seeds: list[int], grid: dict[str, list], out: Path) -> list[GridRun]:
    """Every run of the comparison, in the order they are trained; each folder is checked to lie in ``out``."""
    runs = []
    for loss in losses:
        # options only some losses use are swept for those only: --grid lambda_=15,30,60 trains CE once
        keys = sorted(k for k in grid if option_applies(k, loss))
        points = [tuple(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
        for point, seed in itertools.product(points or [()], seeds):
            run = GridRun(loss, point, seed, out)
            runs.append(replace(run, folder=_inside(out, folder_name(f"{run.label}-seed{seed}"))))
    return runs


def _inside(out: Path, name: str) -> Path:
    """``out / name``, refused when it leads elsewhere (a link in ``out`` pointing out of it)."""
    folder = out / name
    if folder.resolve().parent != out.resolve():
        raise ConfigError(f"the run folder {folder} leads outside --out {out} (to {folder.resolve()}); remove it")
    return folder


def check_request(losses: Sequence[str], seeds: Sequence[int], confirm_seeds: Sequence[int], select_on: str) -> None:
    """The parts of a comparison that need no run folder: at least one loss and seed, no seed twice,
    a metric to choose on."""
    if not losses:
        raise ConfigError("--losses names no loss; give one or more, e.g. --losses ce,fbl")
    if not seeds:
        raise ConfigError("--seeds names no seed; give one or more, e.g. --seeds 0,1,2")
    for flag, given in (("--seeds", seeds), ("--confirm-seeds", confirm_seeds)):
        twice = sorted({seed for seed in given if list(given).count(seed) > 1})
        if twice:
            raise ConfigError(f"{flag} lists seed {twice[0]} more than once; one run per seed, give each seed once")
    _selected_metric(select_on)


def _selected_metric(select_on: str) -> str:
    split, _, metric = select_on.partition("-")
    if split != "val" or metric not in SELECTABLE:
        raise ConfigError(f"Expected --select-on val-<{'|'.join(SELECTABLE)}> but got {select_on!r}")
    return metric


def requested_config(run: GridRun, preset: str | None, overrides: dict) -> TrainConfig:
    """The configuration ``run`` is asked to train with (checked: a misspelt loss stops before any training).

    Later wins: ``preset`` (for a multi-expert loss, its method preset, which extends ``preset``), the
    command's train flags ``overrides``, the grid point.
    """
    point = {k: list(v) if isinstance(v, tuple) else v for k, v in run.point}
    values = {**overrides, **point, "loss": run.loss, "seed": run.seed, "out": str(run.folder)}
    values.pop("overwrite", None)
    return resolve_config(method_preset(run.loss, preset, values), overrides=values)


def method_preset(loss: str, preset: str | None, values: dict) -> str | None:
    """The preset ``loss`` starts from: ``preset`` itself, or for a loss that trains a multi-expert model
    ``<preset>-<loss>`` (``preset`` as ``fbl train`` chooses it, from ``--dataset`` when not named).

    Without that method preset, a multi-expert ``arch`` in ``values`` (the run's flags) or in ``preset``
    lets the run start from ``preset``; anything else is one line naming the loss and the way out.
    """
    if loss not in LOSSES or not getattr(loss_class(loss), "needs_experts", False):
        return preset  # a misspelt loss is left to resolve_config, which names it
    name = LOSSES.canonical(loss)
    base = starting_preset(preset, values.get("dataset"))
    if base is not None and f"{base}-{name}".lower() in list_presets():
        return f"{base}-{name}"
    arch = values.get("arch") or (load_preset(base).get("arch") if base else None)
    if arch is not None and MODELS.canonical(arch) in MULTI_EXPERT_ARCHS:
        return preset
    with_method = sorted(p.removesuffix(f"-{name}") for p in list_presets() if p.endswith(f"-{name}"))
    raise ConfigError(
        f"--losses {loss} trains a multi-expert model and there is no method preset {base or '<preset>'}-{name} "
        f"with its settings: pass --arch {' or '.join(sorted(MULTI_EXPERT_ARCHS))}, or a --preset that has one "
        f"({', '.join(with_method) or 'none yet'})"
    )


def _check_chooses_on_validation(cfg: TrainConfig, select_on: str) -> None:
    if not validation_size(cfg.data.val_split, 1):
        raise ConfigError(
            f"--select-on {select_on} chooses on the validation split, but --val-split {cfg.data.val_split} "
            "trains without one; pass --val-split auto or a number per class (the test split never chooses)"
        )


def _refuse_duplicates(runs: list[GridRun], configs: list[TrainConfig]) -> None:
    """Two runs of one configuration would count one result twice (``--losses ce,CE``, ``--grid x=1,1.0``)."""
    seen: list[tuple[dict, GridRun]] = []
    for run, cfg in zip(runs, configs, strict=True):
        values = {k: v for k, v in _comparable(cfg).items() if k not in BOOKKEEPING}
        same = next((other for other_values, other in seen if other_values == values), None)  # 30 == 30.0
        if same is not None:
            raise ConfigError(
                f"{same.folder.name} and {run.folder.name} would train the same run; "
                "list each loss, grid value and seed once"
            )
        seen.append((values, run))


def first_difference(recorded: TrainConfig, asked: TrainConfig) -> str | None:
    """The first option (in declaration order) whose value differs, as ``--lr 0.1, not 0.5``; ``None``: same run.

    Runtime options (device, workers, ...) and bookkeeping (``out``, ``resume``, ...) do not count;
    data folders are compared as absolute paths.
    """
    ignored = BOOKKEEPING | set(runtime_keys())
    before, now = _comparable(recorded), _comparable(asked)
    for key, value in now.items():
        if key not in ignored and before.get(key) != value:
            flag = option_specs()[key].flag
            return f"{flag} {_shown(before.get(key))}, not {_shown(value)}"
    return None


def _comparable(cfg: TrainConfig) -> dict:
    flat = json.loads(json.dumps(cfg.flat()))  # as read back from config.yaml: tuples are lists
    return {**flat, **{key: absolute_path(flat[key]) for key in DATA_PATH_KEYS}}


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) or value is None else str(value)


def recorded_config(folder: RunFolder) -> TrainConfig:
    """The configuration the run in ``folder`` last ran with (``config.yaml`` and its resumes, else the checkpoint)."""
    if folder.config_path.is_file():
        return config_from_dict(folder.effective_config(), str(folder.config_path))
    checkpoint = folder.checkpoint_path()
    return config_from_dict(load_checkpoint(checkpoint)["config"], f"the config in {checkpoint}")


def decide(run: GridRun, asked: TrainConfig, overwrite: bool) -> str:
    """What to do with ``run``: ``"skip"`` (finished as asked), ``"resume"``, ``"train"`` or ``"retrain"``.

    Writes nothing; a folder that cannot take the run, or holds another configuration's run
    (without ``overwrite``), is a one-line ConfigError.
    """
    folder = RunFolder(run.folder, writer=False)
    finished, started = folder.summary_path.is_file(), folder.checkpoint_path().is_file()
    if not (finished or started):
        folder.check_new_run(overwrite=folder.written_by_fbl())  # fbl's leftovers of a run killed early go
        return "train"
    foreign = folder.foreign_files()
    if foreign:  # a user's config.yaml or summary.json would be read as a run's
        raise ConfigError(f"{run.folder / foreign[0]} was not written by fbl; move it away or pick another --out")
    difference = first_difference(recorded_config(folder), asked)
    if difference is None:
        if not finished:
            folder.check_resumable()
        return "skip" if finished else "resume"
    if not overwrite:
        raise ConfigError(
            f"{run.folder} holds a run trained with {difference} as asked now: pick another --out, "
            "or pass --overwrite to train it again"
        )
    folder.check_new_run(overwrite=True)  # refuses a folder holding files of a user's named like fbl's
    return "retrain"


def run_all(runs: list[GridRun], preset: str | None, overrides: dict, progress=None, select_on: str = "") -> None:
    """Train every run that is not finished as asked; resume the interrupted ones.

    Every run is checked (configuration, folder, what it holds) before the first one trains.
    """
    overwrite = bool(overrides.get("overwrite"))
    configs = [requested_config(run, preset, overrides) for run in runs]
    _refuse_duplicates(runs, configs)
    if select_on:
        for cfg in configs:
            _check_chooses_on_validation(cfg, select_on)
    actions = [decide(run, cfg, overwrite) for run, cfg in zip(runs, configs, strict=True)]
    for index, (run, cfg, action) in enumerate(zip(runs, configs, actions, strict=True), 1):
        name = f"[{index}/{len(runs)}] {run.folder.name}"
        if action == "skip":
            logger.info("%s: finished with this configuration, skipped", name)
            continue
        if action == "resume":
            cfg = cfg.replace(resume=str(run.folder))
        cfg = cfg.replace(overwrite=action == "retrain" or RunFolder(run.folder, writer=False).written_by_fbl())
        logger.info("%s: %s", name, {"resume": "resuming", "train": "training", "retrain": "training again"}[action])
        train(cfg, **({"progress": progress} if progress else {}))


def choose(runs: list[GridRun], select_on: str) -> dict[str, tuple]:
    """For each loss, the grid point with the best mean validation ``select_on`` at the last epoch."""
    metric = _selected_metric(select_on)
    scores: dict[str, dict[tuple, list[float]]] = {}
    for run in runs:
        value = (load_run(run.folder).summary.get("last_val") or {}).get(metric)
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
    check_writable_folder(out, "comparison folder")
    check_request(losses, seeds, confirm_seeds, select_on)
    for key in sorted(set(overrides) & set(SET_BY_COMPARE) - {"overwrite"}):  # e.g. --resume: every run would take it
        raise ConfigError(f"{option_specs()[key].flag} is set by fbl compare itself: {SET_BY_COMPARE[key]}")
    report_folder(out / "report").check()  # a user's own report.md there is refused before hours of training
    runs = plan(losses, seeds, grid, out)
    run_all(runs, preset, overrides, progress, select_on)
    chosen = choose(runs, select_on)
    extra_seeds = [s for s in confirm_seeds if s not in seeds]
    confirmations = [
        run for loss, (point, _) in chosen.items() for run in plan([loss], extra_seeds, {k: [v] for k, v in point}, out)
    ]
    run_all(confirmations, preset, overrides, progress)
    runs = runs + confirmations
    record = {
        loss: {"point": dict(point), "val": score, "chosen_on_seeds": list(seeds), "confirmed_on_seeds": extra_seeds}
        for loss, (point, score) in chosen.items()
    }
    write_atomic(out / "chosen.json", json.dumps(record, indent=2))
    html = write_report([r.folder for r in runs], out / "report")
    return "\n".join([*_chosen_lines(runs, chosen, seeds, select_on), f"report: {html}"])


def _chosen_lines(runs: list[GridRun], chosen: dict[str, tuple], seeds: Sequence[int], select_on: str) -> list[str]:
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
        label = ", ".join(f"{k}={format_value(v)}" for k, v in point) or "no grid"
        lines.append(f"  {loss} ({label}; val {score:.2f}; n={row['n']}): {cells}")
    return lines
