"""One training run, top to bottom: build, loop over epochs, write the run folder.

The run folder holds ``config.yaml`` (fully resolved), ``metrics.jsonl`` (one object per epoch),
``summary.json`` (last epoch as the headline, best epoch labelled as selected on the evaluation
split), ``checkpoints/last.pt`` / ``best.pt`` and TensorBoard events under ``tb/``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import yaml

from fbl.config import TrainConfig, validate
from fbl.data import build_dataset
from fbl.data.tensor_loader import TensorBatchLoader
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, resolve_checkpoint_path, save_checkpoint
from fbl.engine.device import resolve_device
from fbl.engine.evaluate import evaluate
from fbl.engine.lr_schedule import step_lr_with_warmup
from fbl.engine.progress import Progress, no_progress
from fbl.engine.train_one_epoch import train_one_epoch
from fbl.engine.two_stage import ClassifierRetraining
from fbl.errors import ConfigError
from fbl.losses import create_loss
from fbl.losses.registry import loss_parameters
from fbl.models import create_model
from fbl.train_rules import resolve_train_rule

logger = logging.getLogger(__name__)

# Fields a resumed run may change; everything else comes from the checkpoint so the run continues exactly.
RUNTIME_FIELDS = ("device", "quiet", "limit_batches", "print_freq", "workers", "eval_every")

HEADLINE_KEYS = ("top1", "top5", "many", "medium", "few")


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator whose state depends only on (seed, epoch, stream): resuming needs no saved state."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 16 + stream)


@dataclass
class Experiment:
    """Everything a run is built from; also what ``fbl eval`` rebuilds from a checkpoint."""

    cfg: TrainConfig
    device: torch.device
    data: object
    model: torch.nn.Module
    criterion: torch.nn.Module
    train_loader: TensorBatchLoader
    test_loader: TensorBatchLoader


def build_loss(cfg: TrainConfig, class_counts: list[int], class_weight=None, drw_epoch=None) -> torch.nn.Module:
    """Pass each loss the config values its constructor takes; ``loss_options`` must all be accepted."""
    accepted = loss_parameters(cfg.loss)
    candidates = {
        "lambda_": cfg.lambda_,
        "schedule": cfg.alpha_schedule,
        "total_epochs": cfg.epochs,
        "beta": cfg.beta,
        "weight": class_weight,
        "drw_epoch": drw_epoch,
    }
    kwargs = {k: v for k, v in candidates.items() if k in accepted and v is not None}
    unknown = sorted(set(cfg.loss_options) - accepted)
    if unknown:
        raise ConfigError(f"Loss {cfg.loss!r} does not take option(s) {', '.join(unknown)}")
    kwargs.update(cfg.loss_options)
    return create_loss(cfg.loss, class_counts, **kwargs)


def build_experiment(cfg: TrainConfig, data=None, load_stage1: bool = True) -> Experiment:
    """Data, model, loss and loaders as ``cfg`` describes; ``load_stage1=False`` skips reading the
    stage-1 weights of a cRT run (its own checkpoint will overwrite them anyway)."""
    device = resolve_device(cfg.device)
    if data is None:
        data = build_dataset(
            cfg.dataset, data_dir=cfg.data_dir, imb_type=cfg.imb_type, imb_factor=cfg.imb_factor,
            rand_number=cfg.rand_number, download=cfg.download,
        )
    rule = resolve_train_rule(
        cfg.train_rule, data.class_counts, data.train_targets, total_epochs=cfg.epochs, seed=cfg.seed,
        beta=cfg.beta, drw_epoch=cfg.drw_epoch, samples_per_class=cfg.samples_per_class,
    )
    torch.manual_seed(cfg.seed)
    model_kwargs = {"pretrained": True} if cfg.pretrained else {}
    model = create_model(cfg.arch, num_classes=data.num_classes, classifier=cfg.classifier, **model_kwargs)
    _check_model_fits_data(model, data, cfg.arch)
    if cfg.stage2_from:
        if load_stage1:
            _load_model_weights(model, load_checkpoint(cfg.stage2_from)["model"], cfg.stage2_from)
        model = ClassifierRetraining(model, data.num_classes)
    model = model.to(device)
    criterion = build_loss(cfg, data.class_counts, rule.class_weight, rule.drw_epoch).to(device)
    train_loader = TensorBatchLoader(
        data.train_images, data.train_targets, cfg.batch_size, augment=data.augment, train=True,
        device=device, seed=cfg.seed, sampler=rule.sampler,
    )
    test_loader = TensorBatchLoader(
        data.test_images, data.test_targets, max(cfg.batch_size, 256), augment=data.augment, train=False,
        device=device,
    )
    return Experiment(cfg, device, data, model, criterion, train_loader, test_loader)


def _check_model_fits_data(model: torch.nn.Module, data, arch: str) -> None:
    """One tiny forward pass on CPU, so an architecture that cannot take these images is a user
    error before training instead of a traceback in the first batch."""
    probe = torch.zeros((2, *data.train_images.shape[1:]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError:
        shape = "x".join(str(n) for n in data.train_images.shape[1:])
        raise ConfigError(f"Model {arch!r} cannot take the {shape} images of {data.name}; pick another --arch") from None
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


def _resume_config(cfg: TrainConfig, checkpoint: dict) -> TrainConfig:
    saved = dict(checkpoint["config"])
    for name in RUNTIME_FIELDS:
        saved[name] = getattr(cfg, name)
    saved["resume"] = cfg.resume
    return validate(TrainConfig(**saved))


def train(cfg: TrainConfig, progress: Progress = no_progress) -> dict:
    """Run (or resume) training as configured; returns the summary written to ``summary.json``."""
    checkpoint = None
    if cfg.resume:
        checkpoint_path = resolve_checkpoint_path(cfg.resume)
        checkpoint = load_checkpoint(checkpoint_path)
        cfg = _resume_config(cfg, checkpoint)
        run_dir = checkpoint_path.parent.parent
    else:
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    exp = build_experiment(cfg)
    model, criterion = exp.model, exp.criterion
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    start_epoch, best = cfg.start_epoch, None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, best = checkpoint["epoch"], checkpoint["best"]
        torch.set_rng_state(checkpoint["torch_rng_state"])
        logger.info("resuming %s at epoch %d", run_dir, start_epoch)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    metrics_path = run_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start_epoch)
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

    writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_epoch)
    class_counts = exp.data.class_counts
    logger.info(
        "%s: %d train / %d test images, %d classes, counts %d..%d; model %s, loss %s, device %s",
        cfg.dataset, len(exp.data.train_targets), len(exp.data.test_targets), exp.data.num_classes,
        max(class_counts), min(class_counts), cfg.arch, cfg.loss, exp.device,
    )
    last_metrics = None
    epochs = progress(range(start_epoch, cfg.epochs), total=cfg.epochs, initial=start_epoch, desc="epochs")
    for epoch in epochs:
        started = time.perf_counter()
        lr = step_lr_with_warmup(
            epoch, cfg.lr, cfg.epochs, cfg.warmup_epochs, tuple(cfg.lr_milestones), tuple(cfg.lr_decay)
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        criterion.set_epoch(epoch)
        exp.train_loader.set_epoch(epoch)
        train_stats = train_one_epoch(
            model, criterion, exp.train_loader, optimizer, epoch=epoch, limit_batches=cfg.limit_batches,
            mixup_alpha=cfg.mixup_alpha if cfg.mixup else None,
            generator=epoch_generator(cfg.seed, epoch, stream=1), progress=progress,
        )
        record = {
            "epoch": epoch, "lr": lr, "alpha": getattr(criterion, "alpha", None),
            "train_loss": train_stats["loss"], "train_acc": train_stats["acc"],
        }
        is_last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every == 0 or is_last:
            last_metrics = evaluate(
                model, exp.test_loader, class_counts, limit_batches=cfg.limit_batches, progress=progress
            )
            record["eval"] = last_metrics
            if best is None or last_metrics["top1"] > best["top1"]:
                best = {**last_metrics, "epoch": epoch}
                save_checkpoint(_checkpoint_state(cfg, model, optimizer, epoch, best), run_dir / "checkpoints" / "best.pt")
            logger.info("epoch %d/%d lr %.4g loss %.4f train %.2f%% | test %s", epoch + 1, cfg.epochs, lr,
                        train_stats["loss"], train_stats["acc"], _headline(last_metrics))
        else:
            logger.info("epoch %d/%d lr %.4g loss %.4f train %.2f%%", epoch + 1, cfg.epochs, lr,
                        train_stats["loss"], train_stats["acc"])
        record["seconds"] = time.perf_counter() - started
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        _log_tensorboard(writer, record)
        save_checkpoint(_checkpoint_state(cfg, model, optimizer, epoch, best), run_dir / "checkpoints" / "last.pt")
    writer.close()

    if last_metrics is None:  # resumed a run that had already finished
        last_metrics = _last_eval(metrics_path)
    summary = {
        "last": {**last_metrics, "epoch": cfg.epochs - 1},
        "best": best,
        "best_selected_on": "the evaluation split (the test set; these datasets have no separate validation split)",
        "class_counts": list(class_counts),
        "groups": {name: members for name, members in exp.data.groups.items()},
        "run_dir": str(run_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _checkpoint_state(cfg, model, optimizer, epoch, best) -> dict:
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": epoch + 1,  # epochs completed = the epoch to start from on resume
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": cfg.to_dict(),
        "best": best,
        "torch_rng_state": torch.get_rng_state(),
    }


def _truncate_metrics(path: Path, start_epoch: int) -> None:
    """On resume, drop records of epochs that will be run again (written after the last checkpoint)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] < start_epoch]
    path.write_text("".join(line + "\n" for line in kept))


def _last_eval(path: Path) -> dict:
    for line in reversed(path.read_text().splitlines()):
        record = json.loads(line)
        if "eval" in record:
            return record["eval"]
    raise ConfigError(f"{path} holds no evaluation to summarise")


def _log_tensorboard(writer, record: dict) -> None:
    epoch = record["epoch"]
    for key in ("lr", "alpha", "train_loss", "train_acc"):
        if record.get(key) is not None:
            writer.add_scalar(key, record[key], epoch)
    for key in HEADLINE_KEYS:
        value = record.get("eval", {}).get(key)
        if value is not None:
            writer.add_scalar(f"eval/{key}", value, epoch)
    writer.flush()
