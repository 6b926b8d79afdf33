"""GPU check: the paper's loop vs fbl's default path on CIFAR-10-LT, ResNet-50 at 224 px, decoding cores needed.

    benchmarks/gpu_check.sh                      # on a GPU machine: under 8 minutes
    GPU_CHECK_QUICK=1 benchmarks/gpu_check.sh    # tiny settings, any machine (CPU numbers), < 1 minute

Runs on CUDA when available, else on the CPU (and says so). Four measurements, printed as a
table and written to ``--out`` as ``gpu_check.json`` and ``gpu_check.md``:

1. CIFAR-10-LT (imbalance 100), ResNet-32, batch 64: img/s of ``reference`` (the paper's loop:
   per-image PIL transforms in a DataLoader, fp32, NCHW, eager, FBL written from its formula) and
   ``default`` (fbl's trainer path: GPU-side augmentation, precision auto, channels-last, compiled),
   after warm-up, alternating rounds; the median.
2. The projected 200-epoch run of ``default`` (training + evaluation every epoch + compilation once).
3. ResNet-50 at ``--image-size`` (224), bf16 autocast, channels-last, ``torch.compile``, batch
   ``--r50-batch``, SGD steps on random inputs already on the device: training img/s.
4. Decoding cores that rate needs: it divided by images/s per core of each decoding path of
   ``benchmarks/decode.py`` (PIL, ``--fast-decode``, exported JPEG shards with ``--fast-decode``)
   measured here on generated 500x375 JPEGs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from fbl.config import resolve_config
from fbl.engine.distributed import Distributed
from fbl.engine.evaluate import evaluate
from fbl.engine.execution import Execution
from fbl.engine.experiment import build_data, build_experiment
from fbl.engine.train_one_epoch import train_one_epoch
from fbl.models import create_model

HERE = Path(__file__).resolve().parent
EPOCHS, BATCH = 200, 64


def _sibling(name: str):
    """A benchmark script of this folder as a module (their helpers are shared, not copied)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


throughput, decode = _sibling("throughput"), _sibling("decode")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PaperLoop:
    """The paper's training loop on ``device``: PIL per image, fp32, NCHW, eager, FBL longhand, plain SGD."""

    def __init__(self, data, device: torch.device, seed: int = 123):
        transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
        ])  # fmt: skip
        dataset = throughput.PilCifar(data.train_images, data.train_targets, transform)
        self.loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0)
        torch.manual_seed(seed)
        self.device, self.model = device, create_model("resnet32", num_classes=data.num_classes).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        self.counts = torch.tensor(data.class_counts, dtype=torch.float32, device=device)

    def run(self, steps: int) -> int:
        self.model.train()
        seen = 0
        for x, y in islice(self.loader, steps):
            x, y = x.to(self.device), y.to(self.device)
            logits, features = self.model(x, return_features=True)
            loss = throughput.fbl_reference_loss(logits, features, y, self.counts)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            seen += y.shape[0]
        synchronize(self.device)
        return seen


class DefaultPath:
    """fbl's trainer path on ``device`` with its defaults (precision auto, channels-last, compiled)."""

    def __init__(self, cfg, data, device: torch.device, compile_: bool):
        self.exp = build_experiment(cfg, Distributed(device=device), data=data)
        self.loader, self.device = self.exp.train_loader(), device
        self.execution = Execution.resolve(self.exp.device, "auto", True, compile_)
        self.runner = self.execution.prepare_model(self.exp.model)
        params = [p for p in self.exp.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4,
                                         **self.execution.optimizer_options())  # fmt: skip
        throughput.late_training_alpha(self.exp.criterion)
        self.epoch = 0

    def run(self, steps: int) -> int:
        self.loader.set_epoch(self.epoch)
        self.epoch += 1
        images = train_one_epoch(self.runner, self.exp.criterion, self.loader, self.optimizer, epoch=self.epoch,
                                 execution=self.execution, limit_batches=steps)["images"]  # fmt: skip
        synchronize(self.device)
        return images

    def eval_images_per_s(self, batches: int) -> tuple[float, float]:
        loader, counts = self.exp.eval_loader("test"), self.exp.data.class_counts
        first, _ = throughput.timed(lambda: evaluate(self.runner, loader, counts, execution=self.execution,
                                                     limit_batches=1))  # fmt: skip
        seconds, _ = throughput.timed(lambda: evaluate(self.runner, loader, counts, execution=self.execution,
                                                       limit_batches=batches))  # fmt: skip
        return min(batches, len(loader)) * loader.batch_size / seconds, first


def cifar_comparison(args, device: torch.device) -> dict:
    """Median img/s of the paper's loop and the default path, and the projected 200-epoch run."""
    overrides = {"device": str(device), "epochs": EPOCHS, "data_dir": args.data_dir or "./data"}
    cfg = resolve_config("cifar10-lt", overrides=overrides)
    if args.data_dir and (Path(args.data_dir) / "cifar-10-batches-py").is_dir():
        data, source = build_data(cfg.data), f"CIFAR-10-LT read from {args.data_dir}"
    else:
        data, source = throughput.generated_cifar10_lt(), "GENERATED random data with CIFAR-10-LT's shapes"
    benches = {"reference": PaperLoop(data, device), "default": DefaultPath(cfg, data, device, not args.no_compile)}
    first_step = {name: throughput.timed(bench.run, 1)[0] for name, bench in benches.items()}
    for bench in benches.values():
        bench.run(args.warmup)
    rates = {name: [] for name in benches}
    for _ in range(args.rounds):
        for name, bench in benches.items():
            seconds, images = throughput.timed(bench.run, args.steps)
            rates[name].append(images / seconds)
    median = {name: statistics.median(values) for name, values in rates.items()}
    eval_rate, eval_first = benches["default"].eval_images_per_s(args.eval_batches)
    train_n, test_n = data.split_size("train"), data.split_size("test")
    projection = {
        "train_h": EPOCHS * train_n / median["default"] / 3600, "eval_h": EPOCHS * test_n / eval_rate / 3600,
        "once_s": first_step["default"] + eval_first, "eval_images_per_s": eval_rate,
    }  # fmt: skip
    projection["total_h"] = projection["train_h"] + projection["eval_h"] + projection["once_s"] / 3600
    settings = benches["default"].execution.describe()
    return {"data": source, "images_per_s": median, "rounds": rates, "first_step_s": first_step,
            "default_settings": settings, "speedup": median["default"] / median["reference"],
            "projection_200_epochs": projection}  # fmt: skip


def resnet50_rate(args, device: torch.device) -> dict:
    """Training img/s of ResNet-50 at ``image_size``: bf16 autocast, channels-last, compiled, SGD."""
    model = create_model("resnet50", num_classes=1000).to(device).to(memory_format=torch.channels_last)
    runner = model if args.no_compile else torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.r50_batch, 3, args.image_size, args.image_size, device=device)
    x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.r50_batch,), device=device)

    def step(steps: int) -> None:
        for _ in range(steps):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = runner(x)
                logits = logits[0] if isinstance(logits, tuple) else logits
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)

    first, _ = throughput.timed(step, 1)
    step(args.warmup)
    seconds, _ = throughput.timed(step, args.r50_steps)
    return {"images_per_s": args.r50_batch * args.r50_steps / seconds, "first_step_s": first,
            "batch": args.r50_batch, "image_size": args.image_size, "compiled": not args.no_compile}  # fmt: skip


def decoding_cores(rate: float, images: int) -> dict:
    """Images/s per core of each decoding path (one thread) and the cores ``rate`` img/s needs with it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "photos"
            paths = decode.write_photos(root, images)
            variants = decode.build_variants(root, paths, decode.export_sets(root, paths, Path(tmp) / "shards"))
            chosen = {name: variants[name] for name in ("pil", "tensor", "shards-jpg-fast")}
            per_core = {name: decode.run_once(dataset) for name, dataset in chosen.items()}
    finally:
        torch.set_num_threads(threads)
    return {name: {"images_per_s_per_core": r, "cores_needed": rate / r} for name, r in per_core.items()}


def render(report: dict) -> str:
    c, r = report["cifar"], report["resnet50"]
    p = c["projection_200_epochs"]
    lines = [
        f"device: {report['device']}; torch {report['torch']}; quick: {report['quick']}",
        f"CIFAR-10-LT ResNet-32 batch {BATCH} ({c['data']}): reference {c['images_per_s']['reference']:.0f} img/s, "
        f"default {c['images_per_s']['default']:.0f} img/s ({c['default_settings']}): {c['speedup']:.2f}x",
        f"projected {EPOCHS}-epoch run (default): {p['total_h']:.2f} h (train {p['train_h']:.2f} h, eval "
        f"{p['eval_h']:.2f} h at {p['eval_images_per_s']:.0f} img/s, first steps {p['once_s']:.0f} s)",
        f"ResNet-50 {r['image_size']} px, batch {r['batch']}, bf16, channels-last, compiled={r['compiled']}: "
        f"{r['images_per_s']:.0f} img/s",
        "",
        "| decoding path | images/s per core | cores for the ResNet-50 rate |",
        "| --- | ---: | ---: |",
    ]
    for name, d in report["decoding"].items():
        lines.append(f"| {name} | {d['images_per_s_per_core']:.0f} | {d['cores_needed']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding cifar-10-batches-py; generated data without it")
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--steps", type=int, default=100, help="CIFAR batches per timed round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps after the first (compiling) one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval-batches", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224, help="ResNet-50 input side")
    parser.add_argument("--r50-batch", type=int, default=256)
    parser.add_argument("--r50-steps", type=int, default=30)
    parser.add_argument("--decode-images", type=int, default=200)
    parser.add_argument("--no-compile", action="store_true", help="eager everywhere (compiling takes minutes on a CPU)")
    parser.add_argument("--quick", action="store_true", help="recorded in the report: tiny settings")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU: CPU numbers)"
    started = time.perf_counter()
    report = {"device": name, "torch": torch.__version__, "quick": args.quick, "settings": vars(args)}
    report["cifar"] = cifar_comparison(args, device)
    report["resnet50"] = resnet50_rate(args, device)
    report["decoding"] = decoding_cores(report["resnet50"]["images_per_s"], args.decode_images)
    report["seconds"] = time.perf_counter() - started
    text = render(report)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
