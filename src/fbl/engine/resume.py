"""Where a run starts: afresh, or from a checkpoint with the configuration it was trained with.

``--resume`` continues the run as configured: options that would change it are refused (a larger
``--epochs`` is allowed: it extends the run), the runtime options (``RunConfig`` fields declared
``runtime=True``: device, quiet, ...) are this invocation's. Everything here only reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fbl.config import TrainConfig, config_from_dict, option_specs, runtime_keys, validate
from fbl.engine.checkpoint import holds_weights_only, load_checkpoint, resolve_checkpoint_path
from fbl.engine.data_paths import DATA_PATH_KEYS, absolute_path
from fbl.engine.run_folder import RunFolder
from fbl.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class StartingPoint:
    """The configuration a run trains with, its checkpoint when resumed (else ``None``) and its folder
    (``None``: not chosen yet, a fresh run's default name)."""

    cfg: TrainConfig
    checkpoint: dict | None = None
    folder: Path | None = None


def starting_point(cfg: TrainConfig, given: frozenset = frozenset()) -> StartingPoint:
    """``cfg`` itself for a fresh run; for ``--resume``, the checkpoint's config with this invocation's
    runtime options, after checking that nothing in ``given`` (what the user set) would change the run."""
    if not cfg.run.resume:
        folder = Path(cfg.run.out) if cfg.run.out else None
        # A default folder is named later (rank 0's clock); its parent must take it all the same.
        RunFolder(folder or default_run_dir(cfg), writer=False).check_new_run(overwrite=cfg.run.overwrite)
        return StartingPoint(cfg, folder=folder)
    path = resolve_checkpoint_path(cfg.run.resume)
    checkpoint = load_checkpoint(path)
    if holds_weights_only(checkpoint):
        raise ConfigError(
            f"{path} holds weights only (a run kept with `fbl record`): `fbl eval` reads it, --resume cannot "
            "continue it"
        )
    folder = path.parent.parent
    _check_resumes_the_last_epoch(path, checkpoint, folder)
    resumed = _resume_config(cfg, checkpoint, folder, given)
    RunFolder(folder, writer=False).check_resumable()
    return StartingPoint(resumed, checkpoint, folder)


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<dataset>-<loss>[-crt]-<time>[-<exp_str>]``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = f"-{cfg.run.exp_str}" if cfg.run.exp_str else ""
    stage = "-crt" if cfg.model.stage2_from else ""
    return Path(cfg.run.root_log) / f"{cfg.data.dataset}-{cfg.loss.loss}{stage}-{stamp}{suffix}"


def _resume_config(cfg: TrainConfig, checkpoint: dict, folder: Path, given: frozenset) -> TrainConfig:
    saved = config_from_dict(checkpoint["config"], f"the config in {cfg.run.resume}")
    asked, recorded = cfg.flat(), saved.flat()
    extends = "epochs" in given and asked["epochs"] > recorded["epochs"]

    def changes_the_run(key: str) -> bool:
        if key == "out" and asked["out"] is not None:
            return Path(asked["out"]).resolve() != folder.resolve()
        if key in DATA_PATH_KEYS:  # the same folder however it is written
            return absolute_path(asked[key]) != absolute_path(recorded[key])
        return asked[key] != recorded[key] and not (key == "epochs" and extends)

    changed = sorted(key for key in given & set(asked) - {*runtime_keys(), "resume"} if changes_the_run(key))
    if changed:
        grow = (
            f"; --epochs may only grow beyond {recorded['epochs']}, which extends the run"
            if "epochs" in changed
            else ""
        )
        raise ConfigError(
            f"--resume continues the run as configured; these flags would change it: "
            f"{', '.join(option_specs()[key].flag for key in changed)} (start a new run with them instead{grow})"
        )
    values = {**recorded, **{key: asked[key] for key in runtime_keys()}, "resume": asked["resume"]}
    if extends:
        values["epochs"] = asked["epochs"]
        logger.warning(
            "--epochs %d extends the run from %d epochs: the lr milestones are fractions of the run and the "
            "alpha curriculum is recomputed for %d epochs, so from epoch %d on the schedule differs from the original",
            asked["epochs"], recorded["epochs"], asked["epochs"], checkpoint["epoch"] + 1,
        )  # fmt: skip
    return validate(saved.replace(**values))


def _check_resumes_the_last_epoch(path: Path, checkpoint: dict, folder: Path) -> None:
    """Resuming from an older checkpoint (``best.pt``) would rewind the run and overwrite later metrics."""
    last = folder / "checkpoints" / "last.pt"
    if path.resolve() == last.resolve() or not last.is_file():
        return
    latest = load_checkpoint(last)["epoch"]
    if checkpoint["epoch"] < latest:
        raise ConfigError(
            f"{path} holds epoch {checkpoint['epoch']} of a run that went on to epoch {latest}: resuming from it would "
            f"rewind the run and overwrite its later metrics; resume from the run folder: --resume {folder}"
        )
