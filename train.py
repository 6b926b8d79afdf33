"""The paper's entry point: `python train.py --arch resnet32 --dataset cifar10 --loss_type FeaBal ...`.

Runs `fbl train` with the same flags, so the seed README's commands work as written.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works before `pip install -e .` too

from fbl.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
