"""Command line: argument parsing and nothing else. ``main(argv)`` returns an exit code.

``fbl train`` also accepts every flag of the paper's ``train.py`` under its original spelling
(``--loss_type FeaBal --lambda_ 60 --gpu 0 ...``), so the seed README's commands run unchanged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import nullcontext

from fbl.errors import ConfigError, TrainingDiverged, TrainingInterrupted

logger = logging.getLogger("fbl")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (the usage is one ``--help`` away)."""

    def error(self, message):
        raise ConfigError(f"{message} (see {self.prog} --help)")


class BoolFlag(argparse.Action):
    """``--x`` / ``--no-x`` / ``--x false``: a real boolean (the seed parsed the string "False" as true)."""

    TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}

    def __init__(self, option_strings, dest, **kwargs):
        names = list(option_strings)
        names += [f"--no-{s[2:]}" for s in option_strings if s.startswith("--")]
        kwargs.setdefault("metavar", "BOOL")
        super().__init__(names, dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        if option_string.startswith("--no-"):
            if value is not None:
                parser.error(f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
            return
        if value is None:
            setattr(namespace, self.dest, True)
            return
        text = str(value).strip().lower()
        if text not in self.TRUE | self.FALSE:
            parser.error(f"{option_string} expects true or false but got {value!r}")
        setattr(namespace, self.dest, text in self.TRUE)


def _key_value(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE but got {text!r}")
    import yaml

    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _names(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def _comma_list(convert, noun: str):
    """An argparse ``type`` reading ``"1,2,3"`` as a list, with one clear line for a bad entry."""

    def parse(text: str) -> list:
        try:
            return [convert(part) for part in _names(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {noun} but got {text!r}") from None

    return parse


_float_list = _comma_list(float, "numbers")
_int_list = _comma_list(int, "integers")


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS  # only flags the user gave become overrides
    p.add_argument(
        "--preset", default=s, help="named preset (see `fbl presets`); default from --dataset, else digits-lt"
    )
    p.add_argument("--config", default=s, help="YAML file of options, applied after the preset")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=s, help="digits-lt | cifar10 | cifar100 | imagenet | inat | place365 | folder")
    g.add_argument(
        "--data_path", "--data-dir", "--data_dir", dest="data_dir", default=s, help="folder holding the dataset"
    )
    g.add_argument("--img_path", "--img-path", dest="img_path", default=s, help="image root of the large datasets")
    g.add_argument("--download", action=BoolFlag, default=s, help="fetch CIFAR when missing (needs network)")
    g.add_argument("--imb_type", "--imb-type", dest="imb_type", default=s, help="exp | step")
    g.add_argument(
        "--imb_factor", "--imb-factor", dest="imb_factor", type=float, default=s, help="n_min/n_max, 0.01 = ratio 100"
    )
    g.add_argument(
        "--val-split", "--val_split", dest="val_split", default=s,
        help="balanced validation split from the train images the LT subset left out: "
        "auto (50 per class on CIFAR, as many as digits-lt allows), N per class, or none",
    )  # fmt: skip
    g.add_argument(
        "--rand_number", "--rand-number", dest="rand_number", type=int, default=s, help="seed of the LT subsampling"
    )
    g.add_argument(
        "--image-size", dest="image_size", type=int, default=s,
        help="image files: crop side of the train/eval transforms (default 224)",
    )  # fmt: skip
    g.add_argument(
        "--skip-bad-images",
        dest="skip_bad_images",
        action=BoolFlag,
        default=s,
        help="image files: drop and count unreadable images instead of stopping",
    )
    g.add_argument(
        "--allow-outside-root",
        dest="allow_outside_root",
        action=BoolFlag,
        default=s,
        help="let split lists name files outside --img_path ('..' or absolute paths)",
    )
    g = p.add_argument_group("model and loss")
    g.add_argument("--arch", "-a", default=s, help="model name (see fbl.models.list_models)")
    g.add_argument("--pretrained", action=BoolFlag, default=s, help="torchvision ImageNet weights (torch cache)")
    g.add_argument(
        "--pretrained-weights",
        dest="pretrained_weights",
        default=s,
        metavar="PATH",
        help="torchvision-format ImageNet state dict on disk (resnet152_p)",
    )
    g.add_argument("--classifier", default=s, help="linear | normed (cosine) | auto: normed for LDAM, else linear")
    g.add_argument("--loss_type", "--loss", dest="loss", default=s, help="fbl (FeaBal), ce (CE), ... case-insensitive")
    g.add_argument("--lambda_", "--lambda", dest="lambda_", type=float, default=s, help="FBL stimulus strength A")
    g.add_argument(
        "--alpha-schedule", "--schedule", dest="alpha_schedule", default=s, help="FBL curriculum (default parabolic)"
    )
    g.add_argument(
        "--loss-option",
        "--loss-options",
        dest="loss_options",
        type=_key_value,
        action="append",
        default=s,
        metavar="KEY=VALUE",
        help="extra keyword for the loss, e.g. gamma=2",
    )
    g.add_argument("--train_rule", "--train-rule", dest="train_rule", default=s, help="re-sampling / re-weighting rule")
    g.add_argument(
        "--samples-per-class", dest="samples_per_class", type=int, default=s, help="k of the class-aware sampler"
    )
    g.add_argument(
        "--stage2-from",
        dest="stage2_from",
        default=s,
        help="cRT: retrain the classifier of this stage-1 run (folder or checkpoint) on a frozen backbone",
    )
    g.add_argument("--drw-epoch", dest="drw_epoch", type=int, default=s, help="epoch at which DRW weights switch on")
    g.add_argument("--beta", type=float, default=s, help="effective-number beta")
    g.add_argument("--mixup", action=BoolFlag, default=s, help="input mixup (off by default)")
    g.add_argument("--mixup-alpha", dest="mixup_alpha", type=float, default=s)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=s)
    g.add_argument("--batch_size", "--batch-size", "-b", dest="batch_size", type=int, default=s)
    g.add_argument("--learning_rate", "--lr", dest="lr", type=float, default=s)
    g.add_argument("--momentum", type=float, default=s)
    g.add_argument("--weight_decay", "--weight-decay", "--wd", dest="weight_decay", type=float, default=s)
    g.add_argument(
        "--accum-steps",
        dest="accum_steps",
        type=int,
        default=s,
        help="accumulate K micro-batches of batch_size/K per step (the global batch on fewer devices)",
    )
    g.add_argument("--warmup-epochs", dest="warmup_epochs", type=int, default=s)
    g.add_argument(
        "--lr-milestones",
        dest="lr_milestones",
        type=_float_list,
        default=s,
        metavar="F,F",
        help="epochs (fractions of the run) after which the lr decays, e.g. 0.8,0.9",
    )
    g.add_argument(
        "--lr-decay",
        dest="lr_decay",
        type=_float_list,
        default=s,
        metavar="F,F",
        help="lr factor after each milestone, e.g. 0.01,0.0001",
    )
    g.add_argument("--seed", type=int, default=s)
    g = p.add_argument_group("running")
    g.add_argument("--device", default=s, help="auto | cpu | cuda | cuda:N")
    g.add_argument(
        "--sync-bn",
        dest="sync_bn",
        action=BoolFlag,
        default=s,
        help="torchrun on GPUs: BatchNorm statistics over the global batch",
    )
    g.add_argument("--precision", default=s, help="auto | fp32 | bf16 | fp16 (CUDA); auto = bf16 where native")
    g.add_argument(
        "--channels-last",
        dest="channels_last",
        action=BoolFlag,
        default=s,
        help="channels-last memory format (default on)",
    )
    g.add_argument(
        "--compile",
        action=BoolFlag,
        default=s,
        help="torch.compile the model; default: on for runs of at least 200,000 training images "
        "(about 16 CIFAR-10-LT epochs), where its minute of start-up on a CPU pays for itself",
    )
    g.add_argument("--gpu", type=int, default=s, help="the seed's flag: same as --device cuda:N")
    g.add_argument(
        "--nan-policy",
        dest="nan_policy",
        default=s,
        choices=["stop", "skip"],
        help="a non-finite loss: stop the run (default; the last good checkpoint stays) or skip that step",
    )
    g.add_argument("--eval-every", dest="eval_every", type=int, default=s)
    g.add_argument(
        "--limit-batches", dest="limit_batches", type=int, default=s, help="cap batches per epoch (smoke runs)"
    )
    g.add_argument("--out", default=s, help="run folder (default runs/<dataset>-<loss>-<time>)")
    g.add_argument(
        "--overwrite",
        action=BoolFlag,
        default=s,
        help="let --out replace a folder that already holds a run (else: refused; or --resume it)",
    )
    g.add_argument("--root_log", "--root-log", dest="root_log", default=s, help="parent of default run folders")
    g.add_argument("--exp_str", "--exp-str", dest="exp_str", default=s, help="suffix of the run folder name")
    g.add_argument("--print_freq", "--print-freq", "-p", dest="print_freq", type=int, default=s)
    g.add_argument("--workers", "-j", dest="workers", type=int, default=s)
    g.add_argument("--resume", default=s, help="checkpoint or run folder to continue")
    g.add_argument("--start_epoch", "--start-epoch", dest="start_epoch", type=int, default=s)
    g.add_argument("--quiet", action=BoolFlag, default=s, help="no progress bars or per-epoch lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fbl", description="Feature-Balanced Loss for long-tailed recognition")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_train_arguments(sub.add_parser("train", help="train a model (accepts the paper's train.py flags)"))
    p = sub.add_parser("eval", help="evaluate a checkpoint on its test split")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--data_path", "--data-dir", dest="data_dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit-batches", dest="limit_batches", type=int, default=None)
    p.add_argument(
        "--logit-adjust",
        dest="logit_adjust",
        type=float,
        default=None,
        metavar="TAU",
        help="post-hoc logit adjustment z - TAU log(prior); a negative TAU moves towards frequent classes",
    )
    p.add_argument(
        "--tau-norm",
        dest="tau_norm",
        type=float,
        default=None,
        metavar="P",
        help="tau-normalised classifier W_j / ||W_j||^P",
    )
    p.add_argument(
        "--split",
        default="test",
        help="test (default), val, or another split the dataset has "
        "(CIFAR-10 from ../shared: test_lossless, the lossless 1,000-image subset)",
    )
    p.add_argument("--json", action=BoolFlag, default=False, help="print every metric as JSON instead of the table")
    p.add_argument("--quiet", action=BoolFlag, default=False)
    p = sub.add_parser("data", help="dataset tools: `fbl data check` reads every image before a long run")
    p.add_argument("action", choices=["check"], help="check: count, decode and report every split")
    p.add_argument("--split", action="append", default=None, help="only this split (repeatable)")
    p = sub.add_parser("report", help="tables and figures (report.md, report.html) from run folders")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and the PNG figures")
    p = sub.add_parser(
        "compare",
        help="losses x grid x seeds, chosen on validation, reported on test (other train flags pass through)",
    )
    p.add_argument("--preset", default=None, help="preset every run starts from (e.g. cifar10-lt, digits-lt)")
    p.add_argument("--losses", required=True, help="comma-separated losses, e.g. ce,fbl")
    p.add_argument("--seeds", type=_int_list, default="0", help="comma-separated seeds (default 0)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values to sweep, e.g. lambda_=15,30,60 (repeatable)",
    )
    p.add_argument(
        "--select-on",
        dest="select_on",
        default="val-top1",
        help="validation metric that chooses the grid point: val-top1 | val-many | val-medium | val-few",
    )
    p.add_argument(
        "--confirm-seeds",
        dest="confirm_seeds",
        type=_int_list,
        default="",
        metavar="S1,S2",
        help="comma-separated seeds the chosen grid point is then trained on too (chosen on --seeds only)",
    )
    p.add_argument("--out", required=True, help="folder of the runs and the report")
    sub.add_parser("presets", help="list presets and their hyper-parameters")
    p = sub.add_parser("demo", help="train CE and FBL on digits-lt and compare many/medium/few")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quiet", action=BoolFlag, default=False)
    return parser


def _drop_lone_slashes(argv: list[str]) -> list[str]:
    """The seed README continues lines with ' /' instead of ' \\'; those '/' reach us as arguments."""
    kept = [a for a in argv if a.strip() != "/"]
    if len(kept) != len(argv):
        logger.warning(
            "ignoring %d lone '/' argument(s) (line continuations of the paper's README)", len(argv) - len(kept)
        )
    return kept


def train_overrides(namespace: argparse.Namespace) -> tuple[dict, str | None, str | None]:
    values = dict(vars(namespace))
    values.pop("command", None)
    preset, config_file = values.pop("preset", None), values.pop("config", None)
    if "gpu" in values:
        gpu = values.pop("gpu")
        if "device" in values and values["device"] != f"cuda:{gpu}":
            raise ConfigError(f"--gpu {gpu} and --device {values['device']} disagree; give one of them")
        values["device"] = f"cuda:{gpu}"
    if "loss_options" in values:
        values["loss_options"] = dict(values["loss_options"])
    return values, preset, config_file


def _progress(enabled: bool):
    from tqdm.auto import tqdm

    def wrap(iterable, **kwargs):
        return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)

    return wrap


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and tqdm swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(quiet: bool) -> None:
    """Only the CLI configures logging: one handler on the package logger, quiet = warnings only."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_MainRankOnly())
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _bars_wanted(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty() and _rank() == 0


def _logging_context(bars: bool):
    if not bars:
        return nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[logger])


def cmd_train(namespace) -> int:
    from fbl.config import load_yaml_file, resolve_config
    from fbl.engine.trainer import train
    from fbl.engine.two_stage import stage1_config

    overrides, preset, config_file = train_overrides(namespace)
    cfg = resolve_config(preset, config_file, overrides, stage1_config=stage1_config(config_file, overrides))
    # What the user set (not what a preset filled in): a resumed run refuses those that would change it.
    given = {*overrides, *(["preset"] if preset else []), *(load_yaml_file(config_file) if config_file else [])}
    _setup_logging(cfg.quiet)
    for flag in sorted(set(IGNORED_SEED_FLAGS) & set(overrides)):
        logger.warning("--%s has no effect: %s", flag, IGNORED_SEED_FLAGS[flag])
    bars = _bars_wanted(cfg.quiet)
    with _logging_context(bars):
        summary = train(cfg, progress=_progress(bars), given=frozenset(given))
    if _rank() == 0:
        print(format_summary(summary))
    _leave_process_group()
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", 0))


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _MainRankOnly(logging.Filter):
    """Under torchrun every process logs the same lines; rank 0 speaks for the job (errors still show)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _rank() == 0 or record.levelno >= logging.ERROR


def cmd_eval(namespace) -> int:
    from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

    _setup_logging(namespace.quiet)
    result = evaluate_checkpoint(
        namespace.checkpoint,
        data_dir=namespace.data_dir,
        device=namespace.device,
        limit_batches=namespace.limit_batches,
        logit_adjust_tau=namespace.logit_adjust,
        tau_norm=namespace.tau_norm,
        split=namespace.split,
        progress=_progress(_bars_wanted(namespace.quiet)),
    )
    if namespace.json:
        import json

        print(json.dumps(result, indent=2))
        return 0
    label = "checkpoint"
    if namespace.logit_adjust is not None:
        label += f" +logit-adjust {namespace.logit_adjust:g}"
    if namespace.tau_norm is not None:
        label += f" +tau-norm {namespace.tau_norm:g}"
    print(format_metrics_table({label: result}))
    return 0


def cmd_data(namespace, extra: list[str]) -> int:
    from fbl.config import resolve_config
    from fbl.data.check import check_dataset
    from fbl.engine.trainer import data_from_config

    _setup_logging(False)
    train_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    overrides, preset, config_file = train_overrides(train_parser.parse_args(extra))
    cfg = resolve_config(preset, config_file, overrides)
    data = data_from_config(cfg)
    counts = f"{max(data.class_counts)}..{min(data.class_counts)}"
    groups = ", ".join(f"{g} {len(m)}" for g, m in data.groups.items())
    print(f"{cfg.dataset}: {data.num_classes} classes, training counts {counts}, {groups}")
    bars = _bars_wanted(False)
    with _logging_context(bars):
        report = check_dataset(data, namespace.split, cfg.workers, progress=_progress(bars))
    bad = 0
    for split, entry in report.items():
        print(f"{split}: {entry['images']} images, {len(entry['bad'])} unreadable")
        for path, reason in entry["bad"][:10]:
            print(f"  {path}: {reason}")
        bad += len(entry["bad"])
    return 1 if bad else 0


def cmd_report(namespace) -> int:
    from fbl.reports import write_report

    print(f"report: {write_report(namespace.runs, namespace.out)}")
    return 0


def cmd_compare(namespace, extra: list[str]) -> int:
    from fbl.compare import compare, parse_grid

    _setup_logging(False)
    train_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    overrides, _, _ = train_overrides(train_parser.parse_args(extra))
    overrides.setdefault("quiet", True)
    bars = _bars_wanted(False)
    with _logging_context(bars):
        text = compare(
            namespace.preset, _names(namespace.losses), namespace.seeds,
            parse_grid(namespace.grid), overrides, namespace.out, namespace.select_on, progress=_progress(bars),
            confirm_seeds=namespace.confirm_seeds,
        )  # fmt: skip
    print(text)
    return 0


def cmd_presets(namespace) -> int:
    from fbl.config import list_presets, load_preset

    keys = ("dataset", "arch", "loss", "lambda_", "epochs", "batch_size", "lr", "imb_factor")
    for name in list_presets():
        preset = load_preset(name)
        print(f"{name}: {preset.get('description', '')}")
        print("    " + "  ".join(f"{k}={preset[k]}" for k in keys if k in preset))
        if preset.get("paper"):
            print(f"    from: {preset['paper']}")
    return 0


def cmd_demo(namespace) -> int:
    from fbl.demo import run_demo

    _setup_logging(True)
    bars = _bars_wanted(namespace.quiet)
    with _logging_context(bars):
        print(run_demo(out=namespace.out, epochs=namespace.epochs, progress=_progress(bars)))
    return 0


def _fmt(value) -> str:
    return f"{value:6.2f}" if value is not None else "     -"


def format_metrics_table(rows: dict) -> str:
    """``rows`` maps a label to a metrics dict; one line each with the headline numbers."""
    width = max(len(label) for label in rows) + 2
    lines = [f"{'':{width}}{'top1':>7}{'top5':>7}{'many':>7}{'medium':>7}{'few':>7}"]
    for label, m in rows.items():
        lines.append(
            f"{label:{width}}" + "".join(f" {_fmt(m.get(k))}" for k in ("top1", "top5", "many", "medium", "few"))
        )
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """The end-of-training table: the last epoch, any extra evaluation split at it, and the selected epoch."""
    best = summary["best"]
    rows = {"last epoch": summary["last"]}
    rows.update({f"last epoch, {split}": m for split, m in (summary.get("last_extra") or {}).items()})
    rows[f"best (epoch {best['epoch']})*"] = best
    table = format_metrics_table(rows)
    return f"{table}\n* selected on {summary['best_selected_on']}\nrun folder: {summary['run_dir']}"


# Seed flags that are accepted so the paper's commands run, but mean nothing on this input path.
IGNORED_SEED_FLAGS = {
    "print_freq": "progress shows as a bar on a terminal and as one line per epoch otherwise",
}

COMMANDS = {"train": cmd_train, "eval": cmd_eval, "presets": cmd_presets, "demo": cmd_demo, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # `fbl --dataset cifar10 ...` means `fbl train`, as the seed's train.py
    _setup_logging(quiet=False)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(_drop_lone_slashes(argv))
        if args.command == "compare":
            return cmd_compare(args, extra)
        if args.command == "data":
            return cmd_data(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command is None:
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"fbl: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"fbl: error: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # output piped into `head` and the reader went away
        sys.stderr.close()
        return 0
    except TrainingInterrupted as exc:
        print(f"fbl: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("fbl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
