"""Where one training epoch of `fbl train` goes: a torch.profiler breakdown of the trainer's own path.

The run is built exactly as ``fbl train --preset cifar10-lt`` builds it (``Training`` from
``fbl.engine.trainer``: the same loader, execution settings, optimizer and loss), one epoch is run
to warm up (and compile), then one epoch (or ``--steps`` of it) is profiled, and evaluation of the
test split after it. Every profiled operator is put in one part — convolutions (forward and
backward), BatchNorm, activations, the loss and ``||f||``, the optimizer, batch assembly and
augmentation (the loader's own time), the compiled graph's fused kernels — and the rest of the wall
time is Python and framework overhead. Convolutions also get their achieved rate against this
machine's measured bf16 and fp32 matmul rates.

    .venv/bin/python benchmarks/profile_epoch.py --data-dir /tmp/cifar --out benchmarks/results/profile_epoch.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch._inductor.config
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import cpu_info, matmul_flops, train_flops_per_image  # noqa: E402

from fbl.config import resolve_config  # noqa: E402
from fbl.engine.experiment import build_experiment  # noqa: E402
from fbl.engine.progress import no_progress  # noqa: E402
from fbl.engine.run_folder import RunFolder  # noqa: E402
from fbl.engine.trainer import GracefulStop, Training  # noqa: E402

DATA = "batch assembly + augmentation"
#: (part, substrings of operator names), first match wins; names are lower-cased.
PARTS = (
    ("convolution backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("convolution forward", ("convolution", "conv2d", "_convolution_pointwise")),
    ("BatchNorm", ("batch_norm", "native_batch_norm")),
    ("activations (ReLU)", ("relu", "threshold_backward")),
    ("loss and ||f||", ("norm", "log_softmax", "nll_loss", "cross_entropy", "softmax")),
    ("optimizer (SGD, foreach)", ("_foreach", "optimizer.step", "sgd")),
    ("fused kernels of the compiled graph", ("cpp_fused", "graph_", "kernel")),
    ("linear classifier", ("addmm", "mm", "linear")),
)


class _TimedLoader:
    """The trainer's loader, with each batch's assembly and augmentation in a profiler region."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            with record_function(DATA):
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
            yield batch


def part_of(name: str) -> str:
    lowered = name.lower()
    for part, needles in PARTS:
        if any(needle in lowered for needle in needles):
            return part
    return "other operators"


def _parts(prof, wall_s: float) -> dict:
    """Seconds per part: self CPU time of every operator, the loader region as a whole."""
    seconds: dict[str, float] = {}
    data_s = 0.0
    for event in prof.key_averages():
        if event.key == DATA:
            data_s = event.cpu_time_total / 1e6
            continue
        if event.key.startswith("ProfilerStep") or event.self_cpu_time_total <= 0:
            continue
        part = part_of(event.key)
        seconds[part] = seconds.get(part, 0.0) + event.self_cpu_time_total / 1e6
    # Operators run inside the loader region belong to it, not to their own part.
    inside = _self_time_inside(prof, DATA)
    for part, value in inside.items():
        seconds[part] = max(0.0, seconds.get(part, 0.0) - value)
    seconds[DATA] = data_s
    seconds["Python and framework overhead (rest of the wall time)"] = max(0.0, wall_s - sum(seconds.values()))
    return seconds


def _largest_others(prof, count: int = 8) -> dict:
    """The operators left in "other operators", largest first (what the parts above do not name)."""
    others = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages() if part_of(e.key) == "other operators"}
    return dict(sorted(others.items(), key=lambda item: -item[1])[:count])


def _self_time_inside(prof, region: str) -> dict:
    """Self CPU time per part of the operators nested in ``region`` (so the region is not counted twice)."""
    totals: dict[str, float] = {}
    for event in prof.events():
        parent, inside = event.cpu_parent, False
        while parent is not None:
            if parent.name == region:
                inside = True
                break
            parent = parent.cpu_parent
        if inside:
            part = part_of(event.name)
            totals[part] = totals.get(part, 0.0) + event.self_cpu_time_total / 1e6
    return totals


def _conv_flops(num_classes: int, images: int) -> float:
    """Convolution FLOPs of a training epoch: 3x the forward convolutions (ResNet-32's FLOPs are ~all conv)."""
    return train_flops_per_image(num_classes) * images


def build(args) -> Training:
    overrides = {"device": "cpu", "data_dir": args.data_dir, "compile": not args.eager, "quiet": True,
                 "out": args.run_dir}  # fmt: skip
    cfg = resolve_config("cifar10-lt", overrides=overrides)
    exp = build_experiment(cfg)
    training = Training(exp, RunFolder(args.run_dir, writer=False), None, no_progress)
    training.train_loader = _TimedLoader(training.train_loader)
    return training


@contextmanager
def _stopwatch(box: list):
    started = time.perf_counter()
    yield
    box.append(time.perf_counter() - started)


def _limit(training: Training, steps: int | None) -> None:
    training.cfg.run.limit_batches = steps


def run(args) -> dict:
    # Name the compiled graph's fused C++ kernels in the profile (otherwise one opaque region per graph).
    torch._inductor.config.cpp.enable_kernel_profile = True
    training = build(args)
    stop = GracefulStop()
    _limit(training, args.steps)
    training.one_epoch(0, stop)  # warm-up: compiles the training graph
    training.evaluate_on(training.eval_loaders["test"])  # and the evaluation graph
    wall: list[float] = []
    with profile(activities=[ProfilerActivity.CPU]) as prof, _stopwatch(wall):
        record = training.one_epoch(159, stop)  # late training: alpha near 1, as the paper's runs spend most time
    images = round(record["train_images_per_s"] * record["train_seconds"])
    eval_wall: list[float] = []
    with _stopwatch(eval_wall):
        for split, loader in training.eval_loaders.items():
            training.evaluate_on(loader, split)
    stop.restore()
    conv_s = sum(s for p, s in _parts(prof, wall[0]).items() if p.startswith("convolution"))
    return {
        "machine": {**cpu_info(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "execution": training.execution.describe(),
        "images": images,
        "wall_s": wall[0],
        "logged_images_per_s": record["train_images_per_s"],
        "parts_s": _parts(prof, wall[0]),
        "other_operators_s": _largest_others(prof),
        "conv_tflops": _conv_flops(10, images) / max(conv_s, 1e-9) / 1e12,
        "matmul_tflops": {
            name: matmul_flops(dtype, 2048) / 1e12
            for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))
        },  # fmt: skip
        "eval_s": eval_wall[0],
        "eval_images": sum(training.exp.data.split_size(s) for s in training.eval_loaders),
        "train_epoch_s_full": len(training.train_loader) * training.cfg.optim.batch_size / record["train_images_per_s"],
    }


def table(result: dict) -> str:
    wall = result["wall_s"]
    lines = [
        f"machine: {result['machine']}; execution: {result['execution']}",
        f"one profiled epoch: {result['images']} images in {wall:.1f} s "
        f"({result['logged_images_per_s']:.0f} img/s logged by train_one_epoch)",
        "",
        "| part | seconds | share |",
        "| --- | --- | --- |",
    ]
    for part, seconds in sorted(result["parts_s"].items(), key=lambda item: -item[1]):
        lines.append(f"| {part} | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
    others = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result["other_operators_s"].items())
    lines += ["", f"largest of the other operators: {others}"]
    mm = result["matmul_tflops"]
    lines += [
        "",
        f"convolutions: {result['conv_tflops']:.3f} TFLOP/s achieved (all training FLOPs over the convolution time) "
        f"against {mm['bf16']:.3f} TFLOP/s bf16 and {mm['fp32']:.3f} TFLOP/s fp32 for 2048² matmuls here",
        f"evaluation of every split ({result['eval_images']} images): {result['eval_s']:.1f} s = "
        f"{100 * result['eval_s'] / result['train_epoch_s_full']:.0f}% of a full training epoch "
        f"({result['train_epoch_s_full']:.1f} s at the logged rate)",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=None, help="profile only this many batches of the epoch")
    parser.add_argument("--eager", action="store_true", help="profile without torch.compile")
    parser.add_argument("--out", default=None, help="write the table (markdown) here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as run_dir:
        args.run_dir = run_dir
        result = run(args)
    text = table(result)
    print(text)
    if args.out:
        command = "    .venv/bin/python benchmarks/profile_epoch.py " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text(f"# Where a training epoch goes\n\n{command}\n\n{text}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
