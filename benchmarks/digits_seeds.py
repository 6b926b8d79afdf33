"""CE vs FBL on digits-lt over several seeds: mean and spread of the headline numbers.

    .venv/bin/python benchmarks/digits_seeds.py --seeds 5

Each seed changes the model initialisation and the batch order; the long-tailed subset
(rand_number) stays fixed so every run sees the same data. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from fbl.config import resolve_config
from fbl.engine.trainer import train

KEYS = ("top1", "many", "medium", "few")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--losses", nargs="+", default=["ce", "fbl"])
    args = parser.parse_args()
    results = {loss: {k: [] for k in KEYS} for loss in args.losses}
    with tempfile.TemporaryDirectory() as out:
        for loss in args.losses:
            for seed in range(args.seeds):
                cfg = resolve_config(
                    "digits-lt", overrides={"loss": loss, "seed": seed, "quiet": True, "device": "cpu"}
                )
                last = train(cfg.replace(out=f"{out}/{loss}-{seed}"))["last"]
                for k in KEYS:
                    results[loss][k].append(last[k])
    print(f"digits-lt, last epoch, {args.seeds} seeds (mean ± std)")
    print(f"{'loss':8}" + "".join(f"{k:>16}" for k in KEYS))
    for loss, values in results.items():
        cells = "".join(
            f"{statistics.mean(v):9.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:4.2f}" for v in values.values()
        )
        print(f"{loss:8}{cells}")


if __name__ == "__main__":
    main()
