"""`fbl train`'s own logged training rate beside the paper's loop, measured alternately in one process.

The trainer side is ``fbl.engine.trainer.Training`` built as ``fbl train --preset cifar10-lt`` builds
it (its defaults: bf16 where native, channels-last, compiled); each round trains one whole epoch
through ``Training.one_epoch`` — the rate it returns is the ``train_images_per_s`` that ``fbl train``
logs in ``metrics.jsonl``. The reference is the paper's loop (torchvision's per-image PIL pipeline,
fp32, eager: ``throughput.Reference``) over as many images. Rounds alternate trainer, reference,
trainer, ... so both see the same machine state; the ratio is of the medians.

    .venv/bin/python benchmarks/trainer_vs_reference.py --data-dir /tmp/cifar --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import BATCH, Reference, cpu_info  # noqa: E402

from fbl.config import resolve_config  # noqa: E402
from fbl.engine.experiment import build_experiment  # noqa: E402
from fbl.engine.progress import no_progress  # noqa: E402
from fbl.engine.run_folder import RunFolder  # noqa: E402
from fbl.engine.trainer import GracefulStop, Training  # noqa: E402


def reference_rate(reference: Reference, images: int) -> float:
    steps = -(-images // BATCH)
    started = time.perf_counter()
    seen = 0
    while seen < images:  # the loader ends at the epoch's end: start another pass
        seen += reference.run(min(steps, -(-(images - seen) // BATCH)))
    return seen / (time.perf_counter() - started)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = resolve_config("cifar10-lt", overrides={"device": "cpu", "data_dir": args.data_dir, "out": run_dir})
        exp = build_experiment(cfg)
        training = Training(exp, RunFolder(run_dir, writer=False), None, no_progress)
        reference = Reference(exp.data, cfg.optim.seed)
        stop = GracefulStop()
        warm = training.one_epoch(0, stop)  # compiles, and sees the epoch's last (smaller) batch
        reference.run(5)
        trainer_rates, reference_rates = [], []
        for round_index in range(args.rounds):
            record = training.one_epoch(150 + round_index, stop)  # late training, as most of a run
            trainer_rates.append(record["train_images_per_s"])
            images = round(record["train_images_per_s"] * record["train_seconds"])
            reference_rates.append(reference_rate(reference, images))
            print(f"round {round_index + 1}: fbl train {trainer_rates[-1]:.0f} img/s, "
                  f"paper's loop {reference_rates[-1]:.0f} img/s", flush=True)  # fmt: skip
        stop.restore()
    result = {
        "machine": {**cpu_info(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "execution": training.execution.describe(),
        "first_epoch_s": warm["train_seconds"],
        "fbl_train_images_per_s": trainer_rates,
        "reference_images_per_s": reference_rates,
        "ratio": statistics.median(trainer_rates) / statistics.median(reference_rates),
    }
    print(f"{result['machine']}; {result['execution']}")
    print(f"fbl train / paper's loop = {result['ratio']:.2f}x (medians of {args.rounds} alternating rounds)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
