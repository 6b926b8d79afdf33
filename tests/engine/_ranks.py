"""Run a function on 2 CPU ranks (gloo), as ``torchrun`` would: one spawned process per rank with
``RANK`` / ``WORLD_SIZE`` / ``MASTER_*`` set, each rank's return value sent back as JSON."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(worker, folder: Path, *args, world_size: int = 2, agent_store: bool = False, limit_s: float = 180):
    """``[worker(rank, *args) for each rank]``, each computed in its own process.

    ``agent_store`` hosts the rendezvous store here, in the parent, and makes every rank a client
    of it, as torchrun's agent does; otherwise rank 0 hosts it. A job still running after
    ``limit_s`` is killed and fails the test (a hang, not a time measurement).
    """
    port = free_port()
    store = (
        torch.distributed.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False) if agent_store else None
    )
    context = mp.start_processes(
        _rank_main, args=(worker, port, world_size, agent_store, str(folder), args), nprocs=world_size,
        join=False, start_method="spawn",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + limit_s
        while not context.join(timeout=max(deadline - time.monotonic(), 0.0)):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the {world_size} ranks were still running after {limit_s} s: a hang")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
        del store
    return [json.loads((Path(folder) / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def _rank_main(rank, worker, port, world_size, agent_store, folder, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    if agent_store:
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"
    torch.set_num_threads(1)
    result = worker(rank, *args)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))
