"""Copy the runs of a queue that have not finished into a folder small enough to commit, so a new machine
continues them with ``--resume`` instead of training them again.

    python analysis/snapshot_unfinished_runs.py RUNS_DIR DEST

A 200-epoch ensemble run takes longer than one working session on a 2-core CPU, and a new machine starts
without the old one's disk: a committed snapshot is what survives. For each run folder in ``RUNS_DIR``
with ``checkpoints/last.pt`` and no ``summary.json`` it writes ``DEST/<run>/`` with what ``--resume``
reads (the run's config, splits, metrics, resumes and ``last.pt`` with the optimizer's momentum, byte
for byte), ``best.pt`` without optimizer state (``fbl record``'s form: the selected epoch's weights, which
a resume only ever overwrites), a file list (``.fbl-run``) naming just those files, and the queue's
``RUNS_DIR/<run>.log``. TensorBoard events are left out. ``DEST`` then holds exactly the unfinished
runs: a snapshot of a run that has since finished is removed. Pause the trainings while it copies
(``kill -STOP``): a run that writes a checkpoint between the two copies is refused, in one line.

To continue on a new machine: ``mkdir -p RUNS_DIR && cp -r DEST/. RUNS_DIR/``, then the same queue command
(``analysis/reproduce_cifar10_lt.sh`` resumes every run that has ``checkpoints/last.pt``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fbl.engine.checkpoint import load_checkpoint, save_checkpoint, weights_only
from fbl.engine.run_folder import CONFIG, METRICS, RESUMES, SPLITS, SUMMARY
from fbl.errors import ConfigError
from fbl.manifest import RUN_MARKER, Manifest

#: What ``--resume`` reads, copied as it is (those a run has).
RESUME_FILES = (CONFIG, SPLITS, METRICS, RESUMES, "checkpoints/last.pt")


def unfinished_runs(runs_dir: Path) -> list[Path]:
    return sorted(
        folder.parent.parent
        for folder in runs_dir.glob("*/checkpoints/last.pt")
        if not (folder.parent.parent / SUMMARY).exists()
    )


def snapshot_run(run: Path, dest: Path) -> tuple[int, int]:
    """Write ``dest`` (a new folder) from ``run``; returns how many of its epochs it has completed."""
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    (dest / "checkpoints").mkdir(parents=True)
    copied = [name for name in RESUME_FILES if (run / name).is_file()]
    best_path = run / "checkpoints" / "best.pt"
    has_best = best_path.is_file()
    # Listed before written, as fbl does; no omitted tb/ files.
    Manifest(dest).record(*copied, *(["checkpoints/best.pt"] if has_best else []))
    for name in copied:
        shutil.copyfile(run / name, dest / name)
    if load_checkpoint(dest / "checkpoints" / "last.pt")["epoch"] != last["epoch"]:
        raise ConfigError(f"{run} wrote a checkpoint while it was copied: pause it (kill -STOP) and copy again")
    if has_best:
        best = load_checkpoint(best_path)
        if last["best"] is None or best["best"]["epoch"] != last["best"]["epoch"]:
            raise ConfigError(f"{run}'s best.pt is not the epoch its last.pt selected: pause it and copy again")
        save_checkpoint(weights_only(best), dest / "checkpoints" / "best.pt")
    log = run.parent / f"{run.name}.log"
    if log.is_file():
        shutil.copyfile(log, dest.parent / log.name)
    return last["epoch"], last["config"]["optim"]["epochs"]


def snapshot(runs_dir: Path, dest: Path) -> list[tuple[str, tuple[int, int]]]:
    """Replace ``dest``'s run snapshots with those of ``runs_dir``'s unfinished runs; returns each run's
    name with (epochs done, epochs)."""
    runs = unfinished_runs(runs_dir)
    if dest.is_dir():
        for old in dest.iterdir():  # only what an earlier snapshot wrote
            if (old / RUN_MARKER).is_file():
                shutil.rmtree(old)
            elif old.suffix == ".log":
                old.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    return [(run.name, snapshot_run(run, dest / run.name)) for run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path, help="the queue's run folders (RUNS_DIR)")
    parser.add_argument("dest", type=Path, help="the snapshot folder, replaced")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"error: {args.runs_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        done = snapshot(args.runs_dir, args.dest)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, (done_epochs, epochs) in done:
        print(f"{name}: {done_epochs} of {epochs} epochs done")
    if not done:
        print(f"{args.runs_dir} holds no unfinished run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
