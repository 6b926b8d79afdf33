"""Training throughput: the paper's per-image reference loop vs the project's trainer path, with an ablation.

    .venv/bin/python ../shared/data/cifar10/materialize.py /tmp/cifar
    .venv/bin/python benchmarks/throughput.py --data-dir /tmp/cifar --json throughput.json

Measured in one process on the CPU, ResNet-32, batch 64, CIFAR-10-LT (imbalance ratio 100):

* ``reference``: what the paper's code does. torchvision's per-image PIL pipeline (RandomCrop(32, 4),
  RandomHorizontalFlip, ToTensor, Normalize) in a ``DataLoader`` (``num_workers=0``, shuffled), NCHW
  float32, eager, the FBL loss written out below from its formula (A=60, alpha=1) and plain SGD.
* the trainer path (``build_experiment`` -> ``train_loader`` -> ``Execution`` -> ``train_one_epoch``,
  fused/foreach SGD): ``default`` (precision auto, channels-last, compiled), then each speed feature
  off in turn: ``fp32``, ``nchw``, ``eager``, and ``fp32-eager`` (fp32, NCHW, eager: all off). Its FBL
  criterion is set to the late epoch whose curriculum alpha is closest to the reference's 1.

Every variant gets a freshly built model with the same initial weights, ``--warmup`` untimed steps
(the first one's time is reported; for compiled variants it holds the compilation), then ``--rounds``
rounds of ``--steps`` batches each, variants alternating round-robin (A B1 B2 ... A B1 B2 ...). A
round times data + forward + loss + backward + step end to end; the table gives the median over
rounds. Training FLOPs per image are 3x the forward FLOPs counted by ``FlopCounterMode``; the
matmul rate is measured in this process with square matmuls. Without ``--data-dir`` (or when it does
not exist) the images are random uint8 with CIFAR-10-LT's shapes and class counts. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from fbl.config import resolve_config
from fbl.data import LongTailData, long_tail_counts
from fbl.data.cifar import CIFAR_AUGMENT
from fbl.engine.distributed import Distributed
from fbl.engine.evaluate import evaluate
from fbl.engine.execution import CompiledOrEager, Execution
from fbl.engine.experiment import build_data, build_experiment
from fbl.engine.train_one_epoch import train_one_epoch
from fbl.models import create_model

BATCH, EPOCHS = 64, 200
# (precision, channels_last, compile) of each trainer-path variant; "reference" is the paper's loop.
TRAINER_VARIANTS = {
    "default": ("auto", True, True),
    "fp32": ("fp32", True, True),
    "nchw": ("auto", False, True),
    "eager": ("auto", True, False),
    "fp32-eager": ("fp32", False, False),
}
VARIANTS = ("reference", *TRAINER_VARIANTS)
MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mib() -> float:
    """Resident memory now (unlike the peak it can fall, so it shows what each variant keeps)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * resource.getpagesize() / 2**20


def cpu_info() -> dict:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return {"model": model, "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def matmul_flops(dtype: torch.dtype, size: int, min_seconds: float = 1.0) -> float:
    """Median FLOP/s of ``size``-square matmuls in ``dtype``, repeated for at least ``min_seconds``."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    times, started = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


def train_flops_per_image(num_classes: int) -> float:
    """3x the forward FLOPs of ResNet-32 on one 32x32 image (backward ~ twice the forward)."""
    model = create_model("resnet32", num_classes=num_classes)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(BATCH, 3, 32, 32), return_features=True)
    return 3 * counter.get_total_flops() / BATCH


def generated_cifar10_lt(seed: int = 0) -> LongTailData:
    """Random uint8 images with CIFAR-10-LT's shapes and class counts (5000 ... 50; 10,000 test images)."""
    gen = torch.Generator().manual_seed(seed)
    counts = long_tail_counts(5000, 10, "exp", 0.01)
    train_y = torch.repeat_interleave(torch.arange(10), torch.tensor(counts))
    return LongTailData(
        name="cifar10", num_classes=10, class_names=[f"class{c}" for c in range(10)],
        train_images=torch.randint(0, 256, (len(train_y), 3, 32, 32), dtype=torch.uint8, generator=gen),
        train_targets=train_y,
        test_images=torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=gen),
        test_targets=torch.arange(10).repeat(1000), class_counts=counts,
        indices=np.arange(len(train_y)), augment=CIFAR_AUGMENT,
    )  # fmt: skip


def fbl_reference_loss(logits, features, target, counts, lambda_=60.0, alpha=1.0):
    """CE(z_ij - alpha A lam_j / (||f_i||_2 + 1e-12), y_i), lam_j = (log n_max - log n_j) / (log n_max - log n_min)."""
    log_n = torch.log(counts)
    lam = (log_n.max() - log_n) / (log_n.max() - log_n.min())
    norm = features.norm(p=2, dim=1, keepdim=True)
    return F.cross_entropy(logits - alpha * lambda_ * lam / (norm + 1e-12), target)


class PilCifar(Dataset):
    """The paper's dataset: HWC uint8 arrays, one ``Image.fromarray`` + transform per item."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform):
        self.images, self.targets, self.transform = images.permute(0, 2, 3, 1).numpy(), targets.tolist(), transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.targets[i]


class Reference:
    name, compiled, alpha = "reference", False, 1.0

    def __init__(self, data, seed: int):
        transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
        ])  # fmt: skip
        dataset = PilCifar(data.train_images, data.train_targets, transform)
        self.loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0)
        torch.manual_seed(seed)
        self.model = create_model("resnet32", num_classes=data.num_classes)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        self.counts = torch.tensor(data.class_counts, dtype=torch.float32)
        self.precision, self.settings = "fp32", "paper: PIL per image, fp32, NCHW, eager"

    def run(self, steps: int) -> int:
        self.model.train()
        seen = 0
        for x, y in islice(self.loader, steps):
            logits, features = self.model(x, return_features=True)
            loss = fbl_reference_loss(logits, features, y, self.counts)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            seen += y.shape[0]
        return seen


def late_training_alpha(criterion) -> float:
    """Put FBL's curriculum at the epoch whose alpha is closest to the reference's 1 (late training)."""
    gaps = {}
    for epoch in range(EPOCHS):
        criterion.set_epoch(epoch)
        gaps[epoch] = abs(criterion.alpha - 1.0)
    criterion.set_epoch(min(gaps, key=gaps.get))
    return criterion.alpha


class Trainer:
    """The project's path, built as ``fbl.engine.trainer.train`` builds it."""

    def __init__(self, name: str, cfg, data):
        precision, channels_last, compile_ = TRAINER_VARIANTS[name]
        self.name, self.exp = name, build_experiment(cfg, Distributed(device=torch.device("cpu")), data=data)
        self.loader = self.exp.train_loader()
        self.execution = Execution.resolve(self.exp.device, precision, channels_last, compile_)
        self.runner = self.execution.prepare_model(self.exp.model)
        params = [p for p in self.exp.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            params, lr=0.1, momentum=0.9, weight_decay=2e-4, **self.execution.optimizer_options()
        )
        self.alpha = late_training_alpha(self.exp.criterion)
        self.precision, self.compiled, self.epoch = self.execution.precision, self.execution.compile, 0

    @property
    def settings(self) -> str:
        fell_back = isinstance(self.runner, CompiledOrEager) and not self.runner._use_compiled
        return self.execution.describe() + (" (compile failed: eager)" if fell_back else "")

    def run(self, steps: int) -> int:
        self.loader.set_epoch(self.epoch)  # a fresh order and augmentation each round
        self.epoch += 1
        return train_one_epoch(
            self.runner, self.exp.criterion, self.loader, self.optimizer, epoch=self.epoch,
            execution=self.execution, limit_batches=steps,
        )["images"]  # fmt: skip


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def eval_images_per_s(bench: Trainer, batches: int) -> dict:
    """Evaluation speed of ``bench``: one untimed batch (compiles the eval graph), then ``batches``."""
    loader, counts = bench.exp.eval_loader("test"), bench.exp.data.class_counts
    first_s, _ = timed(lambda: evaluate(bench.runner, loader, counts, execution=bench.execution, limit_batches=1))
    seconds, _ = timed(lambda: evaluate(bench.runner, loader, counts, execution=bench.execution, limit_batches=batches))
    images = min(batches, len(loader)) * loader.batch_size
    return {"images_per_s": images / seconds, "first_batch_s": first_s}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding cifar-10-batches-py; random data when absent or missing")
    parser.add_argument("--steps", type=int, default=40, help="batches per timed round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (>= 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, variants alternating")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--eval-batches", type=int, default=10, help="test batches (256) timed for the projection")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmuls timed")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or not args.variants:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if min(args.steps, args.warmup, args.rounds, args.eval_batches, args.matmul_size) < 1:
        parser.error("--steps, --warmup, --rounds, --eval-batches and --matmul-size must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": "cpu", "epochs": EPOCHS, "data_dir": args.data_dir}
    cfg = resolve_config("cifar10-lt", overrides=overrides)
    if args.data_dir and Path(args.data_dir).is_dir():
        data, source = build_data(cfg.data), f"CIFAR-10-LT (IF 100) read from {args.data_dir}"
    else:
        data, source = generated_cifar10_lt(), "GENERATED random uint8 data with CIFAR-10-LT's shapes and counts"
    machine = {**cpu_info(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    rate = {name: matmul_flops(dtype, args.matmul_size) for name, dtype in MATMUL_DTYPES.items()}
    flops = train_flops_per_image(data.num_classes)

    benches, results = [], {}
    for name in args.variants:  # set up and warm up in this order; the peak RSS only ever grows
        rss_before, setup_s = rss_mib(), time.perf_counter()
        bench = Reference(data, cfg.optim.seed) if name == "reference" else Trainer(name, cfg, data)
        setup_s = time.perf_counter() - setup_s
        first_step_s, _ = timed(bench.run, 1)
        if args.warmup > 1:
            bench.run(args.warmup - 1)
        benches.append(bench)
        results[name] = {"settings": bench.settings, "precision": bench.precision, "alpha": bench.alpha,
                         "setup_s": setup_s,
                         "first_step_s": first_step_s, "rounds_images_per_s": [],
                         "rss_increase_mib": rss_mib() - rss_before, "peak_rss_mib": peak_rss_mib()}  # fmt: skip
    for _ in range(args.rounds):
        for bench in benches:
            seconds, images = timed(bench.run, args.steps)
            results[bench.name]["rounds_images_per_s"].append(images / seconds)

    ref = results.get("reference")
    ref_ips = statistics.median(ref["rounds_images_per_s"]) if ref else None
    for bench in benches:
        r = results[bench.name]
        r.update(settings=bench.settings, images_per_s=statistics.median(r["rounds_images_per_s"]))
        r["ratio_to_reference"] = r["images_per_s"] / ref_ips if ref_ips else None
        r["compile_s"] = max(r["first_step_s"] - BATCH / r["images_per_s"], 0.0) if bench.compiled else None
        r["matmul_fraction"] = r["images_per_s"] * flops / rate["bf16" if r["precision"] == "bf16" else "fp32"]
    projection = None
    default = next((b for b in benches if b.name == "default"), None)
    if default is not None:
        ev = eval_images_per_s(default, args.eval_batches)
        train_n, test_n = data.split_size("train"), data.split_size("test")
        train_s = EPOCHS * train_n / results["default"]["images_per_s"]
        eval_s = EPOCHS * test_n / ev["images_per_s"]
        once_s = (results["default"]["compile_s"] or 0.0) + ev["first_batch_s"]
        projection = {"epochs": EPOCHS, "train_images_per_epoch": train_n, "eval_images_per_epoch": test_n,
                      "eval_images_per_s": ev["images_per_s"], "eval_first_batch_s": ev["first_batch_s"],
                      "train_s": train_s, "eval_s": eval_s, "compile_s": once_s,
                      "total_s": train_s + eval_s + once_s}  # fmt: skip
    report = {
        "machine": machine, "data": source, "peak_rss_mib": peak_rss_mib(),
        "settings": {k: getattr(args, k) for k in ("steps", "warmup", "rounds", "eval_batches", "matmul_size")},
        "matmul_tflops": {p: v / 1e12 for p, v in rate.items()}, "train_gflop_per_image": flops / 1e9,
        "variants": results, "projection": projection,
    }  # fmt: skip
    print(render(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def render(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    rate = report["matmul_tflops"]
    lines = [
        f"CPU: {m['model']} (amx_bf16: {m['amx_bf16']}, avx512_bf16: {m['avx512_bf16']}); "
        f"torch {m['torch']}, {m['threads']} threads",
        f"data: {report['data']}; ResNet-32, batch {BATCH}; {s['steps']} steps x {s['rounds']} rounds "
        f"after {s['warmup']} warm-up steps per variant",
        f"training: {report['train_gflop_per_image']:.3f} GFLOP/image (3x forward); "
        f"matmul {s['matmul_size']}^2: fp32 {rate['fp32']:.3f}, bf16 {rate['bf16']:.3f} TFLOP/s",
        "",
        "| variant | settings | img/s (median) | x reference | first step s | compile s | RSS growth MiB "
        "| peak RSS MiB | % of matmul rate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["variants"].items():
        ratio = f"{r['ratio_to_reference']:.2f}" if r["ratio_to_reference"] else "-"
        compile_s = f"{r['compile_s']:.1f}" if r["compile_s"] is not None else "-"
        lines.append(
            f"| {name} | {r['settings']} | {r['images_per_s']:.0f} | {ratio} | {r['first_step_s']:.2f} | {compile_s} "
            f"| {r['rss_increase_mib']:.0f} | {r['peak_rss_mib']:.0f} | {100 * r['matmul_fraction']:.1f} |"
        )
    lines += [
        "",
        f"Final peak RSS {report['peak_rss_mib']:.0f} MiB. Variants are set up and warmed up in table order;"
        " RSS growth is the resident memory each added then, peak RSS the process-wide (monotone) peak after it.",
    ]
    p = report["projection"]
    if p:
        lines.append(
            f"Projected {p['epochs']}-epoch CIFAR-10-LT run, default variant ({p['train_images_per_epoch']:,} train"
            f" + {p['eval_images_per_epoch']:,} test images per epoch, eval at {p['eval_images_per_s']:.0f} img/s):"
            f" {p['total_s'] / 3600:.2f} h (train {p['train_s'] / 3600:.2f} h, eval {p['eval_s'] / 3600:.2f} h,"
            f" compiling {p['compile_s']:.0f} s once)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
