"""One training run, top to bottom: where it starts, then a loop over epochs of named steps.

:func:`train` finds the starting point (:mod:`fbl.engine.resume`), builds the experiment
(:mod:`fbl.engine.experiment`) and hands both to a :class:`Training`, whose :meth:`Training.run`
is the loop: one epoch, evaluation, selection, record, and the summary at the end. What is written
where is :class:`~fbl.engine.run_folder.RunFolder`'s business; this module decides what to record.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import torch

from fbl.balanced_estimate import balanced_estimate_of
from fbl.config import TrainConfig
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint
from fbl.engine.data_paths import with_absolute_data_paths
from fbl.engine.device import resolve_device
from fbl.engine.distributed import distributed_session
from fbl.engine.evaluate import evaluate_with_predictions
from fbl.engine.execution import Execution, compile_pays
from fbl.engine.experiment import Experiment, build_experiment
from fbl.engine.expert_metrics import evaluate_experts
from fbl.engine.progress import Progress, no_progress
from fbl.engine.provenance import git_state, provenance, training_part, unrecorded_part
from fbl.engine.resume import StartingPoint, default_run_dir, starting_point
from fbl.engine.run_folder import HEADLINE_KEYS, RunFolder
from fbl.engine.summary import best_by_split, build_summary, reported_and_selected_splits
from fbl.engine.train_one_epoch import StoppedMidEpoch, train_one_epoch
from fbl.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from fbl.lr_schedule import lr_at
from fbl.seeding import MIXUP_STREAM, epoch_generator
from fbl.statistics import bootstrap_intervals

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig, progress: Progress = no_progress, given: frozenset = frozenset()) -> dict:
    """Run (or resume) training as configured; returns the summary written to ``summary.json``.

    ``given``: the options the user set (flags, config file). On ``--resume`` those that would change
    the run are refused; the others are ignored, as the checkpoint's config is the run's.
    """
    # Data folders are recorded absolute, so `fbl eval` and `--resume` from elsewhere find the same data
    # (also for a run recorded before that, resumed here).
    start = starting_point(with_absolute_data_paths(cfg), given)
    start.cfg = with_absolute_data_paths(start.cfg)
    run_cfg = start.cfg.run
    device = resolve_device(run_cfg.device)
    with distributed_session(device, sync_bn=run_cfg.sync_bn, timeout_s=run_cfg.dist_timeout) as dist:
        dist.check_same(start.cfg.flat())  # ranks launched with other flags: one line naming the first difference
        exp = build_experiment(start.cfg, dist)
        return Training(exp, _run_folder(start, exp), start.checkpoint, progress).run()


def _run_folder(start: StartingPoint, exp: Experiment) -> RunFolder:
    """The run's folder; only rank 0 writes, and every rank agrees on it (a default name holds rank 0's clock)."""
    path = start.folder if start.folder is not None else exp.dist.broadcast(str(default_run_dir(start.cfg)))
    exp.dist.barrier()
    return RunFolder(path, writer=exp.dist.is_main)


class Training:
    """A run in progress: its loaders, execution, optimizer and the epoch it is at."""

    def __init__(self, exp: Experiment, run: RunFolder, checkpoint: dict | None, progress: Progress):
        cfg = exp.cfg
        self.exp, self.cfg, self.folder, self.progress = exp, cfg, run, progress
        self.train_loader = exp.train_loader()
        self.started = time.time()
        self.code = git_state()  # the code this process imported, whatever the checkout does meanwhile
        self.eval_loaders = {split: exp.eval_loader(split) for split in exp.data.eval_splits}
        self.estimate_loaders = {split: exp.eval_loader(split) for split in exp.data.end_of_run_splits}
        self.image_ids = {split: exp.data.image_ids(split) for split in (*self.eval_loaders, *self.estimate_loaders)}
        self.predictions = {}
        self.report_on, self.select_on = reported_and_selected_splits(self.eval_loaders)
        steps = len(self.train_loader) if cfg.run.limit_batches is None else min(
            len(self.train_loader), cfg.run.limit_batches
        )  # fmt: skip
        images = (cfg.optim.epochs - cfg.run.start_epoch) * steps * (cfg.optim.batch_size // cfg.optim.accum_steps)
        self.execution = Execution.resolve(
            exp.device, cfg.run.precision, cfg.run.channels_last, cfg.run.compile, images=images
        )
        self.execution.configure_backends()
        self.long_run = compile_pays(images)  # evaluated sparsely by default, as it is compiled by default
        # What the loops call (DDP-wrapped when distributed, compiled when asked); checkpoints are
        # written from `exp.model` itself.
        self.runner = self.execution.prepare_model(exp.model, wrap=exp.dist.wrap)
        self.optimizer = torch.optim.SGD(
            [p for p in exp.model.parameters() if p.requires_grad], lr=cfg.optim.lr, momentum=cfg.optim.momentum,
            nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay, **self.execution.optimizer_options(),
        )  # fmt: skip
        self.start_epoch, self.best, self.partial = cfg.run.start_epoch, None, None
        self.earlier_parts, self._process_record = [], None
        self.resumed = checkpoint is not None
        if checkpoint is not None:
            self._restore(checkpoint)
        self.first_epoch = self.start_epoch

    def run(self) -> dict:
        """Every remaining epoch — train, evaluate when due, select, record — then the summary."""
        epochs, last = self.cfg.optim.epochs, None
        self._open()
        stop = GracefulStop()
        try:
            for epoch in self.progress(range(self.start_epoch, epochs), total=epochs, initial=self.start_epoch,
                                       desc="epochs"):  # fmt: skip
                started = time.perf_counter()
                record = self.one_epoch(epoch, stop)
                if self.evaluates_at(epoch):
                    last = self.evaluate_splits()
                    self.record_evaluation(record, last)
                    self.select(epoch, last)
                if self._estimate_due(epoch):
                    record["estimates"] = self.estimates()
                logger.info(_epoch_line(record, epochs, last if "eval" in record else None))
                self.record(epoch, record, started)
        except TrainingInterrupted:  # a graceful stop: its checkpoint holds the step reached (a KeyboardInterrupt too)
            raise
        except KeyboardInterrupt:
            raise self._interrupted_at_once() from None
        except (ConfigError, TrainingDiverged):
            self._discard_if_nothing_saved()
            raise
        finally:
            stop.restore()
            self.folder.close()
        return self.summarise(last)

    def one_epoch(self, epoch: int, stop: GracefulStop) -> dict:
        """Train one epoch at its learning rate, curriculum and class weights; its record so far."""
        cfg, exp = self.cfg, self.exp
        optim = cfg.optim
        lr = lr_at(
            optim.lr_schedule, epoch, optim.lr, optim.epochs, optim.warmup_epochs, optim.lr_milestones, optim.lr_decay
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        exp.criterion.set_epoch(epoch)
        exp.criterion.set_weight(exp.rule.weight_at(epoch))
        self.train_loader.set_epoch(epoch)
        try:
            stats = train_one_epoch(
                self.runner, exp.criterion, self.train_loader, self.optimizer, epoch=epoch,
                execution=self.execution, dist=exp.dist, accum_steps=optim.accum_steps,
                stop_requested=lambda: exp.dist.any(stop.requested()), skip_nonfinite=cfg.run.nan_policy == "skip",
                resume_from=_own_share(self.partial, exp.dist), limit_batches=cfg.run.limit_batches,
                mixup_alpha=cfg.loss.mixup_alpha if cfg.loss.mixup else None,
                generator=epoch_generator(optim.seed, epoch, MIXUP_STREAM), progress=self.progress,
            )  # fmt: skip
        except StoppedMidEpoch as stopped:
            self.folder.save_checkpoint(self._checkpoint_state(epoch, stopped.partial))
            raise TrainingInterrupted(
                f"stopped after step {stopped.partial['step']} of epoch {epoch + 1}, checkpoint written: "
                f"continue with --resume {self.folder.path}"
            ) from None
        self.partial = None
        return {
            "epoch": epoch, "lr": lr, "alpha": exp.criterion.alpha,
            "train_loss": stats["loss"], "train_acc": stats["acc"], "train_seconds": stats["seconds"],
            "train_images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
            "skipped_steps": stats["skipped_steps"],
        }  # fmt: skip

    def evaluate_on(self, loader, split: str | None = None) -> dict:
        """Metrics of one split; with ``split``, its per-image predictions are kept (the last ones are saved)."""
        metrics, predictions = evaluate_with_predictions(
            self.runner, loader, self.exp.data.class_counts, execution=self.execution, dist=self.exp.dist,
            limit_batches=self.cfg.run.limit_batches, logit_scale=self.exp.criterion.logit_scale,
            progress=self.progress, image_ids=self.image_ids.get(split),
        )  # fmt: skip
        if split is not None:
            self.predictions[split] = predictions
        return metrics

    def evaluate_splits(self) -> dict:
        started = time.perf_counter()
        metrics = {split: self.evaluate_on(loader, split) for split, loader in self.eval_loaders.items()}
        self._eval_seconds = time.perf_counter() - started
        return metrics

    def evaluates_at(self, epoch: int) -> bool:
        return evaluates_at(epoch, self.cfg.optim.epochs, self.cfg.run.eval_every, self.long_run)

    def _estimate_due(self, epoch: int) -> bool:
        """Every ``--estimate-every`` epochs before the last (the last one is in the summary)."""
        every = self.cfg.run.estimate_every
        return (
            bool(self.estimate_loaders) and every > 0 and (epoch + 1) % every == 0 and epoch < self.cfg.optim.epochs - 1
        )

    def estimates(self) -> dict:
        """The balanced top-1 ± its standard error on each end-of-run split (CIFAR-LT's lossless estimate);
        the split's predictions are kept like the evaluation splits' (paired comparisons on the estimate)."""
        counts = self.exp.data.class_counts
        estimates = {}
        for split, loader in self.estimate_loaders.items():
            metrics = self.evaluate_on(loader, split)
            # accuracy under each test prior, uncorrected and prior-corrected: sums of per-class accuracies,
            # so exact on a split of unequal class sizes
            estimates[split] = {**balanced_estimate_of(metrics, counts), "test_priors": metrics["test_priors"]}
        return estimates

    def _with_expert_estimates(self, experts: list[dict]) -> list[dict]:
        """Each expert's balanced estimate on each end-of-run split (``estimates.<split>``), beside its test numbers."""
        for split, loader in self.estimate_loaders.items():
            on_split = evaluate_experts(
                self.runner, loader, self.exp.data.class_counts, execution=self.execution, dist=self.exp.dist,
                limit_batches=self.cfg.run.limit_batches, logit_scale=self.exp.criterion.logit_scale,
                balanced_estimate=True,
            )  # fmt: skip
            for entry, estimated in zip(experts, on_split, strict=True):
                entry.setdefault("estimates", {})[split] = estimated["estimate"]
        return experts

    def record_evaluation(self, record: dict, metrics: dict) -> None:
        """The reported split as ``eval``, the others (``val``, extra splits) under their names."""
        record["eval_seconds"] = self._eval_seconds
        record["eval"] = metrics[self.report_on]
        record.update({split: m for split, m in metrics.items() if split not in (self.report_on, "test")})

    def select(self, epoch: int, metrics: dict) -> None:
        """Keep the epoch with the highest top-1 on the selection split (and its weights in ``best.pt``)."""
        if self.best is None or metrics[self.select_on]["top1"] > self.best[self.select_on]["top1"]:
            self.best = {"epoch": epoch, **metrics}
            self.folder.save_checkpoint(self._checkpoint_state(epoch), "best")

    def record(self, epoch: int, record: dict, started: float) -> None:
        """The epoch's line in ``metrics.jsonl`` and the checkpoint a resume continues from."""
        record["seconds"] = time.perf_counter() - started
        self.folder.append_metrics(record)
        self.folder.save_checkpoint(self._checkpoint_state(epoch))

    def summarise(self, last: dict | None) -> dict:
        """The summary: the last evaluation (afresh when a finished run was resumed), the selected epoch,
        and per-class feature norms and accuracy on the training split."""
        last = self.evaluate_splits() if last is None else last
        train_split = self.evaluate_on(self.exp.eval_loader("train"))
        summary = build_summary(
            last, self.best, train_split, epochs=self.cfg.optim.epochs, data=self.exp.data, run_dir=self.folder.path
        )
        if hasattr(self.train_loader, "skipped"):  # image files read with --skip-bad-images (this process's count)
            summary["skipped_train_images"] = self.train_loader.skipped
        if self.estimate_loaders:
            summary["last_estimate"] = self.estimates()
        experts = evaluate_experts(
            self.runner, self.eval_loaders[self.report_on], self.exp.data.class_counts, execution=self.execution,
            dist=self.exp.dist, limit_batches=self.cfg.run.limit_batches, logit_scale=self.exp.criterion.logit_scale,
        )  # fmt: skip
        if experts is not None:  # a multi-expert model: each expert's accuracy and feature norms
            summary["experts"] = self._with_expert_estimates(experts)
        summary["last"]["ci95"] = bootstrap_intervals(
            self.predictions[summary["reported_on"]], self.exp.data.class_counts
        )
        record = self._provenance()
        summary["provenance"] = {**record, "parts": self._parts(record, self.cfg.optim.epochs)}
        for split, predictions in self.predictions.items():
            self.folder.write_predictions(split, predictions)
        self.folder.write_summary(summary)
        return summary

    def _discard_if_nothing_saved(self) -> None:
        """Bad input (an unreadable image in the first batch, a loss that diverges at once) writes nothing:
        a new run stopped before its first checkpoint takes back the files it wrote, and its folder if it made it."""
        if self.resumed or self.folder.checkpoint_path().exists() or not self.folder.writes:
            return
        self.folder.close()
        self.folder.clear()
        if not self._folder_existed:
            try:
                self.folder.path.rmdir()
            except OSError:
                pass  # it holds something that is not fbl's: leave it

    def _open(self) -> None:
        data, cfg = self.exp.data, self.cfg
        self._folder_existed = self.folder.path.exists()
        if self.resumed:  # config.yaml keeps how the run started; resumes.jsonl records what changed
            self.folder.open_resumed(cfg.to_dict(), self.start_epoch)
        else:
            self.folder.open_new(cfg.to_dict(), overwrite=cfg.run.overwrite)
        self.folder.write_splits(data.split_indices())
        counts = data.class_counts
        sizes = " / ".join(f"{data.split_size(split)} {split}" for split in self.eval_loaders)
        logger.info(
            "%s: %d train / %s images, %d classes, counts %d..%d; model %s, loss %s, device %s (%s)",
            cfg.data.dataset, data.split_size("train"), sizes, data.num_classes, max(counts), min(counts),
            cfg.model.arch, cfg.loss.loss, self.exp.device, self.execution.describe(),
        )  # fmt: skip

    def _restore(self, checkpoint: dict) -> None:
        self.exp.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.start_epoch, self.best = checkpoint["epoch"], best_by_split(checkpoint["best"])
        self.partial = checkpoint.get("partial")
        self.earlier_parts = checkpoint.get("provenance_parts") or (
            [unrecorded_part((0, self.start_epoch))] if self.start_epoch > 0 or self.partial else []
        )
        torch.set_rng_state(checkpoint["torch_rng_state"])
        logger.info("resuming %s at epoch %d", self.folder.path, self.start_epoch + 1)

    def _checkpoint_state(self, epoch: int, partial: dict | None = None) -> dict:
        """What a resume needs. ``partial``: the run stopped inside ``epoch`` (step and sums so far)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            # epochs completed = the epoch to start from on resume (the interrupted one, with ``partial``)
            "epoch": epoch if partial is not None else epoch + 1,
            "partial": partial,
            "model": self.exp.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": self.cfg.to_dict(),
            "best": self.best,
            "torch_rng_state": torch.get_rng_state(),
            "provenance_parts": self._parts(self._process_record or self._provenance(), epoch + (partial is None)),
        }

    def _provenance(self) -> dict:
        """This process's record (how it ran, ending now; its code as read when it started). Checkpoints reuse
        the one read at the first of them (the machine does not change mid-process); the summary reads it afresh."""
        self._process_record = provenance(
            self.execution, self.exp.dist.world_size, self.exp.device, started_at=self.started, model=self.runner,
            code=self.code,
        )  # fmt: skip
        return self._process_record

    def _parts(self, record: dict, epochs_done: int) -> list[dict]:
        """Every part of the run so far: the earlier processes' (from the checkpoint) and this one's."""
        return [*self.earlier_parts, training_part(record, (self.first_epoch, epochs_done), self.started)]

    def _interrupted_at_once(self) -> TrainingInterrupted:
        path = self.folder.checkpoint_path()
        if not path.exists():
            return TrainingInterrupted("interrupted before the first checkpoint; there is nothing to resume")
        done = load_checkpoint(path)["epoch"] if self.folder.writes else "the last"
        return TrainingInterrupted(
            f"interrupted at once; the checkpoint holds {done} complete epochs (the epoch in progress runs again): "
            f"continue with --resume {self.folder.path}"
        )


def evaluates_at(epoch: int, epochs: int, every: int | None, long_run: bool) -> bool:
    """Whether epoch ``epoch`` (0-based) of ``epochs`` is evaluated: every ``every``-th with ``--eval-every``,
    else every epoch of a short run; a long run (as many training images as make compiling pay) every 10th
    epoch and every epoch of its last tenth (at least its last 10), so evaluation costs a few percent of the
    training time and the epochs a run ends on are all recorded. The last epoch always."""
    if epoch == epochs - 1:
        return True
    if every is not None:
        return (epoch + 1) % every == 0
    if not long_run:
        return True
    return epoch >= epochs - max(10, epochs // 10) or (epoch + 1) % 10 == 0


def _epoch_line(record: dict, epochs: int, metrics: dict | None) -> str:
    line = f"epoch {record['epoch'] + 1}/{epochs} lr {record['lr']:.4g} loss {record['train_loss']:.4f}"
    line += f" train {record['train_acc']:.2f}% ({record['train_images_per_s']:.0f} img/s)"
    for split, split_metrics in (metrics or {}).items():
        line += f" | {split} " + " ".join(
            f"{key} {split_metrics[key]:.2f}" if split_metrics.get(key) is not None else f"{key} -"
            for key in HEADLINE_KEYS
        )
    return line


def _own_share(partial: dict | None, dist) -> dict | None:
    """The interrupted epoch's sums were saved summed over ranks: rank 0 carries them, the others start at 0."""
    if partial is None or dist.is_main:
        return partial
    return {**partial, "loss_sum": 0.0, "correct": 0.0, "seen": 0, "skipped": 0}


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
