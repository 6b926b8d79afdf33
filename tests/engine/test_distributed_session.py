"""The process-group session, the collective timeout and the start-up configuration check, on 2 CPU
ranks (gloo) launched as torchrun launches them."""

import time

import pytest
import torch
import torch.distributed as dist

from fbl.engine.distributed import Distributed, distributed_session
from fbl.errors import ConfigError
from tests.engine._ranks import run_ranks

CPU = torch.device("cpu")
CONFIG = {"arch": "resnet32", "lr": 0.1, "epochs": 200, "milestones": [160, 180]}


def sum_of_ranks(job) -> float:
    return job.all_reduce_sum(torch.tensor([job.rank + 1.0])).item()


def twice_and_once_failing(rank) -> dict:
    seen = []
    for _ in range(2):
        with distributed_session(CPU, timeout_s=30) as job:
            seen.append({"initialized": dist.is_initialized(), "world_size": job.world_size, "sum": sum_of_ranks(job)})
        seen[-1]["initialized_after"] = dist.is_initialized()
    try:
        with distributed_session(CPU, timeout_s=30):
            raise RuntimeError("a failure inside the session")
    except RuntimeError:
        pass
    return {"sessions": seen, "initialized_after_failure": dist.is_initialized()}


def configuration_checks(rank) -> dict:
    with distributed_session(CPU, timeout_s=30) as job:
        job.check_same(CONFIG)  # the same everywhere: no error
        job.check_same({**CONFIG, "out": f"runs/{rank}"}, ignore=["out"])
        errors = {}
        cases = {
            "lr": {**CONFIG, "lr": 0.5} if rank == 1 else CONFIG,
            "missing": {key: v for key, v in CONFIG.items() if key != "epochs" or rank == 0},
            "int_or_float": {**CONFIG, "epochs": 200.0} if rank == 1 else CONFIG,
        }
        for name, config in cases.items():
            try:
                job.check_same(config)
            except ConfigError as error:
                errors[name] = str(error)
        return errors


@pytest.mark.parametrize("agent_store", [False, True], ids=["rank0-store", "torchrun-agent-store"])
def test_a_session_leaves_the_group_and_can_be_entered_again(tmp_path, agent_store):
    for result in run_ranks(twice_and_once_failing, tmp_path, agent_store=agent_store):
        # The group outlives a session (the next one reuses it) and goes when the process exits.
        assert result["sessions"] == [
            {"initialized": True, "world_size": 2, "sum": 3.0, "initialized_after": True},
            {"initialized": True, "world_size": 2, "sum": 3.0, "initialized_after": True},
        ]
        assert result["initialized_after_failure"] is True


def test_ranks_with_different_configurations_stop_with_one_line_each(tmp_path):
    suffix = ": launch every rank with the same configuration"
    for errors in run_ranks(configuration_checks, tmp_path):
        assert errors == {
            "lr": "rank 1 resolved lr=0.5 but rank 0 lr=0.1" + suffix,
            "missing": "rank 1 resolved no epochs but rank 0 epochs=200" + suffix,
            "int_or_float": "rank 1 resolved epochs=200.0 but rank 0 epochs=200" + suffix,
        }


def frozen_peer(rank) -> dict:
    with distributed_session(CPU, timeout_s=2) as job:
        if rank == 1:
            time.sleep(8)  # frozen past the timeout, then joins (too late)
        try:
            sum_of_ranks(job)
        except RuntimeError as error:
            return {"error": str(error)}
        return {"error": None}


def test_a_rank_waiting_for_a_frozen_peer_fails_instead_of_hanging(tmp_path):
    # Without the 2 s timeout rank 0 would simply wait the 8 s and then succeed.
    waiting = run_ranks(frozen_peer, tmp_path, limit_s=120)[0]
    assert waiting["error"] is not None and "timed out" in waiting["error"].lower()


def test_alone_the_session_is_a_single_process_and_touches_no_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with distributed_session(CPU) as job:
        assert job == Distributed(0, 1, CPU)
        assert not dist.is_initialized()
        job.check_same(CONFIG)
    with pytest.raises(ConfigError, match="--dist-timeout must be a positive number of seconds, got 0"):
        with distributed_session(CPU, timeout_s=0):
            pass
