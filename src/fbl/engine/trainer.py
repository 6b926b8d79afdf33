"""One training run, top to bottom: build the experiment, loop over epochs, record each epoch.

What is written where (config, metrics, summary, checkpoints, TensorBoard) is
:class:`~fbl.engine.run_folder.RunFolder`'s business; this module decides what to record.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from fbl.config import FIELD_NAMES, TrainConfig, config_from_dict, validate
from fbl.data import build_dataset
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, resolve_checkpoint_path
from fbl.engine.device import resolve_device
from fbl.engine.distributed import Distributed, init_distributed
from fbl.engine.evaluate import evaluate
from fbl.engine.execution import Execution
from fbl.engine.lr_schedule import step_lr_with_warmup
from fbl.engine.progress import Progress, no_progress
from fbl.engine.run_folder import HEADLINE_KEYS, RunFolder
from fbl.engine.train_one_epoch import StoppedMidEpoch, train_one_epoch
from fbl.errors import ConfigError, TrainingInterrupted
from fbl.losses import alpha_at, build_loss, loss_parameters, loss_weighting
from fbl.models import ClassifierRetraining, create_model
from fbl.models.torchvision_resnet import require_pretrained_source
from fbl.seeding import MIXUP_STREAM, epoch_generator
from fbl.train_rules import ResolvedRule, resolve_train_rule

logger = logging.getLogger(__name__)

# Fields a resumed run may change; everything else comes from the checkpoint so the run continues exactly
# (and ``--epochs`` may grow: that extends the run).
RUNTIME_FIELDS = ("device", "quiet", "limit_batches", "print_freq", "workers", "eval_every")


@dataclass
class Experiment:
    """Everything a run is built from; also what ``fbl eval`` rebuilds from a checkpoint."""

    cfg: TrainConfig
    device: torch.device
    data: object
    model: torch.nn.Module
    criterion: torch.nn.Module
    rule: ResolvedRule
    dist: Distributed = Distributed()

    def train_loader(self):
        # With --accum-steps K the loader yields micro-batches of B/K; K of them are one global batch.
        return self.data.train_loader(
            self.cfg.batch_size // self.cfg.accum_steps, device=self.device, seed=self.cfg.seed,
            sampler=self.rule.sampler, rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip

    def eval_loader(self, split: str = "test"):
        return self.data.eval_loader(
            split, max(self.cfg.batch_size, 256), device=self.device, rank=self.dist.rank,
            world_size=self.dist.world_size,
        )  # fmt: skip


def data_from_config(cfg: TrainConfig):
    """The dataset ``cfg`` names, built with the data options of the config (each builder takes its own)."""
    options = ("data_dir", "img_path", "imb_type", "imb_factor", "rand_number", "download", "val_split", "workers",
               "skip_bad_images", "allow_outside_root", "image_size")  # fmt: skip
    return build_dataset(cfg.dataset, **{name: getattr(cfg, name) for name in options})


def build_experiment(cfg: TrainConfig, data=None, load_stage1: bool = True) -> Experiment:
    """Data, model, loss and train rule as ``cfg`` describes; ``load_stage1=False`` skips reading the
    stage-1 weights of a cRT run (its own checkpoint will overwrite them anyway)."""
    dist = init_distributed(resolve_device(cfg.device), cfg.sync_bn)
    device = dist.device
    data = data_from_config(cfg) if data is None else data
    rule = resolve_train_rule(
        cfg.train_rule,
        data.class_counts,
        data.train_targets,
        total_epochs=cfg.epochs,
        seed=cfg.seed,
        beta=cfg.beta,
        drw_epoch=cfg.drw_epoch,
        samples_per_class=cfg.samples_per_class,
        loss_weighting=loss_weighting(cfg.loss),
    )
    torch.manual_seed(cfg.seed)
    require_pretrained_source(cfg.arch, cfg.pretrained, cfg.pretrained_weights)
    # A weights file, when given, wins over the torch cache (a preset may ask for pretrained weights).
    if cfg.pretrained_weights:
        model_kwargs = {"pretrained_weights": cfg.pretrained_weights}
    else:
        model_kwargs = {"pretrained": True} if cfg.pretrained else {}
    model = create_model(cfg.arch, num_classes=data.num_classes, classifier=cfg.classifier, **model_kwargs)
    _check_model_fits_data(model, data, cfg.arch)
    if cfg.stage2_from:
        if load_stage1:
            _load_model_weights(model, load_checkpoint(cfg.stage2_from)["model"], cfg.stage2_from)
        model = ClassifierRetraining(model, data.num_classes)
    model = model.to(device)
    _warn_if_alpha_overshoots(cfg)
    criterion = build_loss(
        cfg.loss,
        data.class_counts,
        options=cfg.loss_options,
        settings={"lambda_": cfg.lambda_, "schedule": cfg.alpha_schedule, "total_epochs": cfg.epochs},
    ).to(device)
    if cfg.sync_bn and dist.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return Experiment(cfg, device, data, model, criterion, rule, dist)


#: Above this the stimulus outgrows the paper's curve (which ends at 1.097) enough to hurt head classes.
ALPHA_WARNING = 1.2


def _warn_if_alpha_overshoots(cfg: TrainConfig) -> None:
    if "schedule" not in loss_parameters(cfg.loss):
        return
    peak = max(alpha_at(cfg.alpha_schedule, epoch, cfg.epochs) for epoch in range(cfg.epochs))
    if peak > ALPHA_WARNING:
        logger.warning(
            "the %s curriculum takes alpha to %.2f in this %d-epoch run (the paper's ends at 1.10); "
            "the default 'parabolic' scales the paper's curve to the run length",
            cfg.alpha_schedule, peak, cfg.epochs,
        )  # fmt: skip


def _check_model_fits_data(model: torch.nn.Module, data, arch: str) -> None:
    """One tiny forward pass on CPU, so an architecture that cannot take these images is a user
    error before training instead of a traceback in the first batch."""
    probe = torch.zeros((2, *data.input_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError:
        shape = "x".join(str(n) for n in data.input_shape)
        raise ConfigError(
            f"Model {arch!r} cannot take the {shape} images of {data.name}; pick another --arch"
        ) from None
    finally:
        model.train(was_training)


def _load_model_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise ConfigError(f"The weights in {source} do not fit this model; --stage2-from needs a stage-1 run") from None


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = f"-{cfg.exp_str}" if cfg.exp_str else ""
    stage = "-crt" if cfg.stage2_from else ""
    return Path(cfg.root_log) / f"{cfg.dataset}-{cfg.loss}{stage}-{stamp}{suffix}"


def _headline(metrics: dict) -> str:
    parts = []
    for key in HEADLINE_KEYS:
        value = metrics.get(key)
        parts.append(f"{key} {value:.2f}" if value is not None else f"{key} -")
    return " ".join(parts)


def _flag(name: str) -> str:
    """The command-line spelling of a config field: ``lambda_`` -> ``--lambda``, ``drw_epoch`` -> ``--drw-epoch``."""
    return "--" + name.rstrip("_").replace("_", "-")


def _resume_config(cfg: TrainConfig, checkpoint: dict, run: RunFolder, given: frozenset = frozenset()) -> TrainConfig:
    """The checkpoint's config with this invocation's runtime fields; an option in ``given`` (what the
    user set) that would change the run is refused, except a larger ``epochs``, which extends it."""
    saved = config_from_dict(checkpoint["config"], f"the config in {cfg.resume}")
    start = checkpoint["epoch"]
    extends = "epochs" in given and cfg.epochs > saved.epochs

    def changes_the_run(name: str) -> bool:
        if name == "out" and cfg.out is not None:
            return Path(cfg.out).resolve() != run.path.resolve()
        return getattr(cfg, name) != getattr(saved, name) and not (name == "epochs" and extends)

    changed = sorted(name for name in given & FIELD_NAMES - {*RUNTIME_FIELDS, "resume"} if changes_the_run(name))
    if changed:
        grow = f"; --epochs may only grow beyond {saved.epochs}, which extends the run" if "epochs" in changed else ""
        raise ConfigError(
            f"--resume continues the run as configured; these flags would change it: "
            f"{', '.join(_flag(name) for name in changed)} (start a new run with them instead{grow})"
        )
    values = saved.to_dict()
    for name in RUNTIME_FIELDS:
        values[name] = getattr(cfg, name)
    values["resume"] = cfg.resume
    if extends:
        values["epochs"] = cfg.epochs
        logger.warning(
            "--epochs %d extends the run from %d epochs: the lr milestones are fractions of the run and the "
            "alpha curriculum is recomputed for %d epochs, so from epoch %d on the schedule differs from the original",
            cfg.epochs, saved.epochs, cfg.epochs, start,
        )  # fmt: skip
    return validate(TrainConfig(**values))


def _check_resumes_the_last_epoch(path: Path, checkpoint: dict, run: RunFolder) -> None:
    """Resuming from an older checkpoint (``best.pt``) would rewind the run and overwrite later metrics."""
    last = run.checkpoint_path()
    if path.resolve() == last.resolve() or not last.is_file():
        return
    latest = load_checkpoint(last)["epoch"]
    if checkpoint["epoch"] < latest:
        raise ConfigError(
            f"{path} holds epoch {checkpoint['epoch']} of a run that went on to epoch {latest}: resuming from it would "
            f"rewind the run and overwrite its later metrics; resume from the run folder: --resume {run.path}"
        )


def _own_share(partial: dict | None, dist: Distributed) -> dict | None:
    """The interrupted epoch's sums were saved summed over ranks: rank 0 carries them, the others start at 0."""
    if partial is None or dist.is_main:
        return partial
    return {**partial, "loss_sum": 0.0, "correct": 0.0, "seen": 0, "skipped": 0}


def _checkpoint_state(cfg, model, optimizer, epoch, best, partial: dict | None = None) -> dict:
    """What a resume needs. ``partial``: the run stopped inside ``epoch`` (step and sums so far)."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        # epochs completed = the epoch to start from on resume (the interrupted one, with ``partial``)
        "epoch": epoch if partial is not None else epoch + 1,
        "partial": partial,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": cfg.to_dict(),
        "best": best,
        "torch_rng_state": torch.get_rng_state(),
    }


def train(cfg: TrainConfig, progress: Progress = no_progress, given: frozenset = frozenset()) -> dict:
    """Run (or resume) training as configured; returns the summary written to ``summary.json``.

    ``given``: the options the user set (flags, config file). On ``--resume`` those that would change
    the run are refused; the others are ignored, as the checkpoint's config is the run's.
    """
    checkpoint = None
    if cfg.resume:
        checkpoint_path = resolve_checkpoint_path(cfg.resume)
        checkpoint = load_checkpoint(checkpoint_path)
        resumed = RunFolder(checkpoint_path.parent.parent, writer=False)
        _check_resumes_the_last_epoch(checkpoint_path, checkpoint, resumed)
        cfg = _resume_config(cfg, checkpoint, resumed, given)
    exp = build_experiment(cfg)
    # Only rank 0 writes; every rank agrees on the folder (a default name holds rank 0's clock).
    if cfg.resume:
        path = checkpoint_path.parent.parent
    else:
        path = exp.dist.broadcast(str(cfg.out if cfg.out else default_run_dir(cfg)))
    run = RunFolder(path, writer=exp.dist.is_main)
    if not cfg.resume and run.holds_a_run():
        if not cfg.overwrite:
            raise ConfigError(
                f"{run.path} already holds a run; continue it with --resume {run.path}, "
                "pick another --out, or pass --overwrite to replace it"
            )
        run.clear()
    exp.dist.barrier()
    model, criterion, data = exp.model, exp.criterion, exp.data
    train_loader = exp.train_loader()
    eval_loaders = {split: exp.eval_loader(split) for split in data.eval_splits}
    steps = len(train_loader) if cfg.limit_batches is None else min(len(train_loader), cfg.limit_batches)
    execution = Execution.resolve(
        exp.device, cfg.precision, cfg.channels_last, cfg.compile,
        images=(cfg.epochs - cfg.start_epoch) * steps * (cfg.batch_size // cfg.accum_steps),
    )  # fmt: skip
    execution.configure_backends()
    if execution.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # What the loops call (DDP-wrapped when distributed, compiled when asked); checkpoints are
    # written from `model` itself.
    runner = execution.prepare_model(exp.dist.wrap(model))
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, **execution.optimizer_options(),
    )  # fmt: skip
    start_epoch, best, partial = cfg.start_epoch, None, None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, best = checkpoint["epoch"], _best_by_split(checkpoint["best"])
        partial = checkpoint.get("partial")
        torch.set_rng_state(checkpoint["torch_rng_state"])
        logger.info("resuming %s at epoch %d", run.path, start_epoch)

    run.open(cfg.to_dict(), start_epoch)
    run.write_splits(data.split_indices())
    class_counts = data.class_counts
    # Reported: the test split (iNaturalist 2018 has none: its val list). Selected on: val where it is
    # not the reported split, else the reported split itself (and the summary says so).
    report_on = "test" if "test" in eval_loaders else "val"
    select_on = "val" if "val" in eval_loaders else report_on

    def evaluate_on(loader) -> dict:
        return evaluate(
            runner, loader, class_counts, execution=execution, dist=exp.dist, limit_batches=cfg.limit_batches,
            logit_scale=criterion.logit_scale, progress=progress,
        )  # fmt: skip

    def evaluate_splits() -> dict:
        return {split: evaluate_on(loader) for split, loader in eval_loaders.items()}

    logger.info(
        "%s: %d train / %s images, %d classes, counts %d..%d; model %s, loss %s, device %s (%s)",
        cfg.dataset, data.split_size("train"), " / ".join(f"{data.split_size(s)} {s}" for s in eval_loaders),
        data.num_classes, max(class_counts), min(class_counts), cfg.arch, cfg.loss, exp.device, execution.describe(),
    )  # fmt: skip
    last = None
    stop = GracefulStop()
    try:
        epochs = progress(range(start_epoch, cfg.epochs), total=cfg.epochs, initial=start_epoch, desc="epochs")
        for epoch in epochs:
            started = time.perf_counter()
            lr = step_lr_with_warmup(
                epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, tuple(cfg.lr_milestones), tuple(cfg.lr_decay)
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            criterion.set_epoch(epoch)
            criterion.set_weight(exp.rule.weight_at(epoch))
            train_loader.set_epoch(epoch)
            try:
                stats = train_one_epoch(
                    runner, criterion, train_loader, optimizer, epoch=epoch, execution=execution, dist=exp.dist,
                    accum_steps=cfg.accum_steps, stop_requested=lambda: exp.dist.any(stop.requested()),
                    skip_nonfinite=cfg.nan_policy == "skip", resume_from=_own_share(partial, exp.dist),
                    limit_batches=cfg.limit_batches, mixup_alpha=cfg.mixup_alpha if cfg.mixup else None,
                    generator=epoch_generator(cfg.seed, epoch, MIXUP_STREAM), progress=progress,
                )  # fmt: skip
            except StoppedMidEpoch as stopped:
                run.save_checkpoint(_checkpoint_state(cfg, model, optimizer, epoch, best, stopped.partial))
                raise TrainingInterrupted(
                    f"stopped after step {stopped.partial['step']} of epoch {epoch}, checkpoint written: "
                    f"continue with --resume {run.path}"
                ) from None
            partial = None
            record = {
                "epoch": epoch, "lr": lr, "alpha": getattr(criterion, "alpha", None),
                "train_loss": stats["loss"], "train_acc": stats["acc"], "train_seconds": stats["seconds"],
                "train_images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
                "skipped_steps": stats["skipped_steps"],
            }  # fmt: skip
            line = f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.4g} loss {stats['loss']:.4f} train {stats['acc']:.2f}%"
            line += f" ({record['train_images_per_s']:.0f} img/s)"
            if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
                eval_started = time.perf_counter()
                last = evaluate_splits()
                record["eval_seconds"] = time.perf_counter() - eval_started
                record["eval"] = last[report_on]
                for split, metrics in last.items():
                    if split not in (report_on, "test"):
                        record[split] = metrics
                if best is None or last[select_on]["top1"] > best[select_on]["top1"]:
                    best = {"epoch": epoch, **last}
                    run.save_checkpoint(_checkpoint_state(cfg, model, optimizer, epoch, best), "best")
                line += "".join(f" | {split} {_headline(metrics)}" for split, metrics in last.items())
            logger.info(line)
            record["seconds"] = time.perf_counter() - started
            run.append_metrics(record)
            run.save_checkpoint(_checkpoint_state(cfg, model, optimizer, epoch, best))
    except TrainingInterrupted:
        run.close()
        raise
    except KeyboardInterrupt:
        run.close()
        if run.checkpoint_path().exists():
            done = load_checkpoint(run.checkpoint_path())["epoch"] if run.writes else "the last"
            raise TrainingInterrupted(
                f"interrupted at once; the checkpoint holds {done} complete epochs (the epoch in progress runs again): "
                f"continue with --resume {run.path}"
            ) from None
        raise TrainingInterrupted("interrupted before the first checkpoint; there is nothing to resume") from None
    finally:
        stop.restore()
    if last is None:  # resumed a run that had already finished: summarise its final weights afresh
        last = evaluate_splits()
    train_split = evaluate_on(exp.eval_loader("train"))
    run.close()
    summary = _summary(last, best, report_on, select_on, train_split, cfg, data, run)
    if hasattr(train_loader, "skipped"):  # image files read with --skip-bad-images (this process's count)
        summary["skipped_train_images"] = train_loader.skipped
    run.write_summary(summary)
    return summary


class GracefulStop:
    """SIGTERM (and a first Ctrl-C) ask the loop to stop after the current step; a second one stops at once.

    The loop then writes a checkpoint holding the step reached and the epoch's sums so far; the
    resumed run replays that epoch's random draws up to the step and goes on exactly as the
    uninterrupted run would.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._asked = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self._asked:
            raise KeyboardInterrupt
        self._asked = True
        logger.warning("%s: stopping after this step (again to stop at once)", signal.Signals(signum).name)

    def requested(self) -> bool:
        return self._asked

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _best_by_split(best: dict | None) -> dict | None:
    """Checkpoints of format 1 before validation splits held the selected test metrics flat."""
    if best is None or "test" in best:
        return best
    return {"epoch": best["epoch"], "test": {k: v for k, v in best.items() if k != "epoch"}}


SELECTION_NOTES = {
    ("test", "val"): "the validation split",
    ("test", "test"): "the test set (this run has no validation split; use it for the last epoch only)",
    ("val", "val"): "the val list, which is also the reported split (the dataset has no test list)",
}


def _summary(last, best, report_on: str, select_on: str, train_split: dict, cfg: TrainConfig, data, run) -> dict:
    """Metrics of the reported split at the last epoch (the headline) and at the selected epoch, labelled."""
    return {
        "reported_on": report_on,
        "last": {**last[report_on], "epoch": cfg.epochs - 1},
        "selected": {"epoch": best["epoch"], "on": select_on, **{k: v for k, v in best.items() if k != "epoch"}},
        "best": {**best[report_on], "epoch": best["epoch"]},
        "best_selected_on": SELECTION_NOTES[report_on, select_on],
        "last_val": last.get("val"),
        "last_extra": {split: m for split, m in last.items() if split not in (report_on, "val", "test")},
        "train_feature_norms": train_split["per_class_feature_norm"],
        "train_per_class_acc": train_split["per_class_acc"],
        "class_counts": list(data.class_counts),
        "groups": dict(data.groups),
        "run_dir": str(run.path),
    }
