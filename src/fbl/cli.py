"""Command line: argument parsing and nothing else. ``main(argv)`` returns an exit code.

``fbl train`` also accepts every flag of the paper's ``train.py`` under its original spelling
(``--loss_type FeaBal --lambda_ 60 --gpu 0 ...``), so the seed README's commands run unchanged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

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


def _argument(spec) -> dict:
    """argparse keywords of one option, from its annotation and metadata."""
    meta, kind = spec.meta, spec.type
    options: set = set(typing.get_args(kind)) or {kind}
    kwargs: dict = {"dest": spec.key, "default": argparse.SUPPRESS}  # only flags the user gave become overrides
    if bool in options:
        kwargs["action"] = BoolFlag
    elif kind is dict:
        kwargs.update(type=_key_value, action="append")
    elif typing.get_origin(kind) is list:
        kwargs.update(type=_float_list, metavar="F,F")
    elif int in options and str not in options:
        kwargs["type"] = int
    elif float in options:
        kwargs["type"] = float
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    kwargs["help"] = _help(spec)
    return kwargs


def _help(spec) -> str:
    default = spec.default
    if isinstance(default, bool):
        default = str(default).lower()
    elif isinstance(default, list):
        default = ",".join(f"{v:g}" for v in default)
    shown = "" if default in (None, "", {}) else f" (default: {default})"
    return (spec.meta["help"] + shown).strip() or None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per config option (every spelling it declares), grouped by section, plus ``--config``."""
    from fbl.config import option_specs

    parser.add_argument("--config", default=argparse.SUPPRESS, help="YAML file of options, applied after the preset")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in option_specs().values():
        if spec.section not in groups:
            groups[spec.section] = parser.add_argument_group(spec.section_title)
        groups[spec.section].add_argument(*spec.flags, **_argument(spec))
    groups["run"].add_argument("--gpu", type=int, default=argparse.SUPPRESS, help="the seed's flag: --device cuda:N")


def train_parser(prog: str = "fbl train") -> argparse.ArgumentParser:
    """The parser of ``fbl train``'s flags, also used for the training flags ``compare`` and ``data`` pass on."""
    parser = _Parser(prog=prog, description=TRAIN_DESCRIPTION)
    add_config_arguments(parser)
    return parser


TRAIN_DESCRIPTION = (
    "Train a model; accepts the paper's train.py flags. Defaults shown are before any preset: "
    "--dataset picks its paper preset (see `fbl presets`)."
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``fbl`` parser; with ``only``, the other subcommands get no arguments (``fbl train``'s flags come
    from the config, which imports torch: ``fbl --help``, ``fbl presets`` and argument errors of ``compare``
    need not wait); ``only=""``: none does."""
    parser = _Parser(prog="fbl", description="Feature-Balanced Loss for long-tailed recognition")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, command in SUBCOMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.description)
        if only is None or name == only:
            command.add_arguments(subparser)
    return parser


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--data_path", "--data-dir", dest="data_dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit-batches", dest="limit_batches", type=int, default=None)
    p.add_argument(
        "--logit-adjust", dest="logit_adjust", type=float, default=None, metavar="TAU",
        help="post-hoc logit adjustment z - TAU log(prior); a negative TAU moves towards frequent classes",
    )  # fmt: skip
    p.add_argument(
        "--tau-norm", dest="tau_norm", type=float, default=None, metavar="P",
        help="tau-normalised classifier W_j / ||W_j||^P",
    )  # fmt: skip
    p.add_argument(
        "--split", default="test",
        help="test (default), val, or another split the dataset has (CIFAR-10 from ../shared: test_lossless, the "
        "lossless 1,000-image subset; lossless_estimate, the balanced estimate from unused lossless train images)",
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=["as-trained", "fp32", "bf16", "fp16"], default="as-trained",
        help="as-trained (default): the precision, memory format and compile mode the run recorded, so its summary "
        "comes out again exactly; fp32: the full-precision reference (eager)",
    )  # fmt: skip
    p.add_argument(
        "--test-time-aggregation", dest="test_time_aggregation", action=BoolFlag, default=False,
        help="multi-expert runs (SADE, FBL experts, ...): SADE's test-agnostic protocol on --split, the experts' "
        "weights learnt on each test prior's subsampled images (labels unread) and the images scored with them",
    )  # fmt: skip
    p.add_argument(
        "--keep-predictions", dest="keep_predictions", action=BoolFlag, default=False,
        help="given a finished run folder: add its per-image predictions on --split to it (predictions/<split>.npz), "
        "for paired comparisons in fbl report on a split training did not keep",
    )  # fmt: skip
    p.add_argument("--json", action=BoolFlag, default=False, help="print every metric as JSON instead of the table")
    p.add_argument("--quiet", action=BoolFlag, default=False)


def _record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a finished run folder")
    p.add_argument("dest", help="the new folder to keep it in (e.g. results/<study>/<run>)")


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action", choices=["check", "export"],
        help="check: count, decode and report every split; export: write every split as pre-resized tar shards "
        "(train from them with --dataset shards --data-dir OUT)",
    )  # fmt: skip
    p.add_argument("--split", action="append", default=None, help="check: only this split (repeatable)")
    p.add_argument("--out", help="export: the new (or empty) folder of the shards and shards.json")
    p.add_argument("--shard-size", type=int, default=5000, help="export: images per shard (default: 5000)")
    p.add_argument(
        "--short-side", type=int, default=None,
        help="export: stored shorter side; default round(image_size * 256 / 224), evaluation's resize (256)",
    )  # fmt: skip
    p.add_argument("--format", choices=["jpg", "png", "npy"], default="jpg", help="export: image encoding (jpg)")
    p.add_argument("--quality", type=int, default=95, help="export: JPEG quality (default: 95)")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and the PNG figures")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, help="preset every run starts from (e.g. cifar10-lt, digits-lt)")
    p.add_argument(
        "--losses", required=True,
        help="comma-separated losses, e.g. ce,fbl; the ensemble methods ride, sade, balpoe and fbl-experts train a "
        "multi-expert model and start from their method preset <preset>-<loss> (e.g. cifar10-lt-ride), under your "
        "other flags and --grid",
    )  # fmt: skip
    p.add_argument("--seeds", type=_int_list, default="0", help="comma-separated seeds (default 0)")
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2",
        help="values to sweep, e.g. lambda_=15,30,60 or expert_lambdas=[15,30,60],[30,60] (repeatable, one key each)",
    )  # fmt: skip
    p.add_argument(
        "--select-on", dest="select_on", default="val-top1",
        help="validation metric that chooses the grid point: val-top1 | val-many | val-medium | val-few",
    )  # fmt: skip
    p.add_argument(
        "--confirm-seeds", dest="confirm_seeds", type=_int_list, default="", metavar="S1,S2",
        help="comma-separated seeds the chosen grid point is then trained on too (chosen on --seeds only)",
    )  # fmt: skip
    p.add_argument(
        "--out", required=True,
        help="folder of the runs and the report; a run already there is kept only if it was trained with the "
        "settings asked now (another is refused, or trained again with --overwrite)",
    )  # fmt: skip


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quiet", action=BoolFlag, default=False)


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


def cmd_train(namespace, extra=()) -> int:
    from fbl.config import load_yaml_file, resolve_config
    from fbl.engine.trainer import train
    from fbl.engine.two_stage import stage1_config
    from fbl.reports.console import format_summary

    overrides, preset, config_file = train_overrides(namespace)
    cfg = resolve_config(preset, config_file, overrides, stage1_config=stage1_config(config_file, overrides))
    # What the user set (not what a preset filled in): a resumed run refuses those that would change it.
    given = {*overrides, *(["preset"] if preset else []), *(load_yaml_file(config_file) if config_file else [])}
    _setup_logging(cfg.run.quiet)
    for flag in sorted(set(IGNORED_SEED_FLAGS) & set(overrides)):
        logger.warning("--%s has no effect: %s", flag, IGNORED_SEED_FLAGS[flag])
    bars = _bars_wanted(cfg.run.quiet)
    with _logging_context(bars):
        summary = train(cfg, progress=_progress(bars), given=frozenset(given))
    if _rank() == 0:
        print(format_summary(summary))
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", 0))


class _MainRankOnly(logging.Filter):
    """Under torchrun every process logs the same lines; rank 0 speaks for the job (errors still show)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _rank() == 0 or record.levelno >= logging.ERROR


def cmd_eval(namespace, extra=()) -> int:
    from fbl.engine.evaluate_checkpoint import evaluate_checkpoint
    from fbl.reports.console import (
        format_long_tail,
        format_metrics_table,
        format_test_priors,
        format_test_time_aggregation,
    )

    _setup_logging(namespace.quiet)
    result = evaluate_checkpoint(
        namespace.checkpoint,
        data_dir=namespace.data_dir,
        device=namespace.device,
        limit_batches=namespace.limit_batches,
        logit_adjust_tau=namespace.logit_adjust,
        tau_norm=namespace.tau_norm,
        split=namespace.split,
        precision=namespace.precision,
        test_time_aggregation=namespace.test_time_aggregation,
        keep_predictions=namespace.keep_predictions,
        progress=_progress(_bars_wanted(namespace.quiet)),
    )
    saved = None
    if namespace.test_time_aggregation and os.path.isdir(namespace.checkpoint):
        from fbl.aggregation_record import save_aggregation

        saved = save_aggregation(namespace.checkpoint, namespace.split, result["test_time_aggregation"])
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
    for line in (format_long_tail(result), format_test_priors(result), format_test_time_aggregation(result)):
        if line:
            print(line)
    print(f"evaluated as: {result['execution']}")
    if result.get("se") is not None:
        partial = " (partial: some classes have no held-out images)" if result.get("partial") else ""
        print(f"balanced estimate: top-1 {result['top1']:.2f} ± {result['se']:.2f} (standard error){partial}")
    if saved is not None:
        print(f"test-time aggregation table saved: {saved} (fbl report shows it)")
    if result.get("kept_predictions"):
        kept = result["kept_predictions"]
        print(f"predictions {'kept in' if kept['written'] else 'already in (identical)'} {kept['path']}")
    return 0


def cmd_record(namespace, extra=()) -> int:
    from fbl.engine.record_run import record_run

    files = record_run(namespace.run, namespace.dest)
    print(f"kept {len(files)} files of {namespace.run} in {namespace.dest} (weights without optimizer state)")
    return 0


def cmd_data(namespace, extra: list[str]) -> int:
    from fbl.config import resolve_config
    from fbl.engine.experiment import build_data

    _setup_logging(False)
    if namespace.action == "export" and (namespace.out is None or namespace.split):
        raise ConfigError("fbl data export needs --out DIR and writes every split (--split is for check)")
    overrides, preset, config_file = train_overrides(train_parser(f"fbl data {namespace.action}").parse_args(extra))
    cfg = resolve_config(preset, config_file, overrides)
    data = build_data(cfg.data)
    counts = f"{max(data.class_counts)}..{min(data.class_counts)}"
    groups = ", ".join(f"{g} {len(m)}" for g, m in data.groups.items())
    print(f"{cfg.data.dataset}: {data.num_classes} classes, training counts {counts}, {groups}")
    bars = _bars_wanted(False)
    with _logging_context(bars):
        if namespace.action == "export":
            return _export_data(namespace, cfg, data, _progress(bars))
        from fbl.data.check import check_dataset

        report = check_dataset(data, namespace.split, cfg.data.workers, progress=_progress(bars))
    bad = 0
    for split, entry in report.items():
        print(f"{split}: {entry['images']} images, {len(entry['bad'])} unreadable")
        for path, reason in entry["bad"][:10]:
            print(f"  {path}: {reason}")
        bad += len(entry["bad"])
    return 1 if bad else 0


def _export_data(namespace, cfg, data, progress) -> int:
    """``fbl data export``: the shards of :mod:`fbl.data.shards`, one line per split."""
    from fbl.data.image_files import eval_resize_size
    from fbl.data.shards import export_shards

    short_side = namespace.short_side or eval_resize_size(cfg.data.image_size)
    index = export_shards(
        data, namespace.out, shard_size=namespace.shard_size, short_side=short_side, image_format=namespace.format,
        quality=namespace.quality, workers=cfg.data.workers, progress=progress,
        source={"data_dir": cfg.data.data_dir, "img_path": cfg.data.img_path},
    )  # fmt: skip
    for split, entry in index["splits"].items():
        size = sum(shard["bytes"] for shard in entry["shards"]) / 2**20
        print(f"{split}: {entry['count']} images in {len(entry['shards'])} shards, {size:.1f} MiB")
    print(f"train from them: fbl train --dataset shards --data-dir {namespace.out} (plus the run's flags)")
    return 0


def cmd_report(namespace, extra=()) -> int:
    from fbl.reports import write_report

    print(f"report: {write_report(namespace.runs, namespace.out)}")
    return 0


def cmd_compare(namespace, extra: list[str]) -> int:
    from fbl.compare import compare, parse_grid

    _setup_logging(False)
    overrides, _, config_file = train_overrides(train_parser("fbl compare").parse_args(extra))
    if config_file is not None:
        raise ConfigError(f"fbl compare reads no --config file ({config_file}): give its values as flags or a --preset")
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


def cmd_presets(namespace, extra=()) -> int:
    from fbl.config import list_presets, load_preset, preset_file_values

    # Every preset's basics, then what the preset file itself sets beyond them (its method's settings: an
    # FBL preset's lambda_, an ensemble's experts and optimiser), not what it inherits and does not use.
    keys = ("dataset", "arch", "loss", "epochs", "batch_size", "lr", "imb_factor")
    prose = {"description", "paper", "extends"}
    for name in list_presets():
        preset = load_preset(name)
        own = [k for k in preset_file_values(name) if k not in prose and k not in keys]
        print(f"{name}: {preset.get('description', '')}")
        print("    " + "  ".join(f"{k}={preset[k]}" for k in (*keys, *own) if k in preset))
        if preset.get("paper"):
            print(f"    from: {preset['paper']}")
    return 0


def cmd_demo(namespace, extra=()) -> int:
    from fbl.demo import run_demo

    _setup_logging(True)
    bars = _bars_wanted(namespace.quiet)
    with _logging_context(bars):
        print(run_demo(out=namespace.out, epochs=namespace.epochs, progress=_progress(bars)))
    return 0


# Seed flags that are accepted so the paper's commands run, but mean nothing on this input path.
IGNORED_SEED_FLAGS = {
    "print_freq": "progress shows as a bar on a terminal and as one line per epoch otherwise",
}


@dataclass(frozen=True)
class Subcommand:
    """One ``fbl`` subcommand: its help, its arguments, and the function that runs it.

    ``takes_train_flags``: the flags it does not know are ``fbl train``'s, passed on (``compare``, ``data``).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[..., int]
    takes_train_flags: bool = False
    description: str | None = None


SUBCOMMANDS = {
    "train": Subcommand(
        "train a model (accepts the paper's train.py flags)", add_config_arguments, cmd_train,
        description=TRAIN_DESCRIPTION,
    ),
    "eval": Subcommand("evaluate a checkpoint on its test split", _eval_arguments, cmd_eval),
    "record": Subcommand(
        "keep a finished run: its results and final and selected weights, without optimizer state",
        _record_arguments, cmd_record,
    ),
    "data": Subcommand(
        "dataset tools: `fbl data check` reads every image before a long run", _data_arguments, cmd_data,
        takes_train_flags=True,
    ),
    "report": Subcommand("tables and figures (report.md, report.html) from run folders", _report_arguments, cmd_report),
    "compare": Subcommand(
        "losses x grid x seeds, chosen on validation, reported on test (other train flags pass through)",
        _compare_arguments, cmd_compare, takes_train_flags=True,
    ),
    "presets": Subcommand("list presets and their hyper-parameters", lambda p: None, cmd_presets),
    "demo": Subcommand("train CE and FBL on digits-lt and compare many/medium/few", _demo_arguments, cmd_demo),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # `fbl --dataset cifar10 ...` means `fbl train`, as the seed's train.py
    _setup_logging(quiet=False)
    # Only the named subcommand's arguments: `fbl --help` and a mistyped subcommand need none (nor torch).
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else "")
    try:
        args, extra = parser.parse_known_args(_drop_lone_slashes(argv))
        if args.command is None:
            parser.print_help()
            return 0
        command = SUBCOMMANDS[args.command]
        if extra and not command.takes_train_flags:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return command.run(args, extra)
    except ConfigError as exc:
        return _exit_with(f"fbl: error: {exc}", 2)
    except TrainingDiverged as exc:
        return _exit_with(f"fbl: error: {exc}", 3)
    except BrokenPipeError:  # output piped into `head` and the reader went away
        sys.stderr.close()
        return 0
    except TrainingInterrupted as exc:
        return _exit_with(f"fbl: {exc}", 130)
    except KeyboardInterrupt:
        return _exit_with("fbl: interrupted", 130)


def _exit_with(line: str, code: int) -> int:
    """Print ``line`` on stderr and return ``code``. Under torchrun every rank meets the same error (the
    start-up checks, a stop all ranks agree on): rank 0 says it once, the others exit with the same code."""
    if _rank() == 0:
        print(line, file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
