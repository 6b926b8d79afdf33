"""Gradient accumulation under DDP (2 gloo ranks on the CPU): K micro-batches per rank make the same
step as one process on the whole global batch, with one gradient all-reduce per optimizer step."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from fbl.engine.distributed import distributed_session, find_ddp
from fbl.engine.execution import CompiledOrEager
from fbl.engine.train_one_epoch import train_one_epoch
from tests.engine._ranks import run_ranks

LR = 0.1


class TwoLayers(torch.nn.Module):
    """No BatchNorm: the function a rank computes on its share does not depend on the other share."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.fc = torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)

    def forward(self, images, return_features=False):
        features = torch.relu(self.hidden(images))
        logits = self.fc(features)
        return (logits, features) if return_features else logits


def cross_entropy(logits, target, features=None):
    return F.cross_entropy(logits, target)


def global_batches(count: int, size: int = 8):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 5, generator=generator), torch.randint(0, 3, (size,), generator=generator))
            for _ in range(count)]  # fmt: skip


def micro_batches(batches, rank: int, accum_steps: int):
    """This rank's interleaved share of each global batch, cut into ``accum_steps`` micro-batches."""
    loader = []
    for images, target in batches:
        share_images, share_target = images[rank::2], target[rank::2]
        loader += zip(share_images.chunk(accum_steps), share_target.chunk(accum_steps), strict=True)
    return loader


def counting_ddp(job, rounds: list):
    """A DDP model whose communication hook counts all-reduce rounds (a round ends at the last bucket)."""
    ddp = job.wrap(TwoLayers())

    def hook(state, bucket):
        rounds[0] += int(bucket.is_last())
        return allreduce_hook(None, bucket)  # what DDP does without a hook: average over ranks

    ddp.register_comm_hook(None, hook)
    return ddp


def train(job, loader, accum_steps, **options):
    rounds = [0]
    ddp = counting_ddp(job, rounds)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)
    stats = train_one_epoch(ddp, cross_entropy, loader, optimizer, epoch=0, dist=job, accum_steps=accum_steps,
                            **options)  # fmt: skip
    params = {name: p.detach().tolist() for name, p in ddp.module.named_parameters()}
    return {"rounds": rounds[0], "params": params, "skipped": stats["skipped_steps"]}


def found_through_wrappers(job) -> dict:
    ddp = job.wrap(TwoLayers())
    return {
        "plain": find_ddp(ddp) is ddp, "compiled": find_ddp(torch.compile(ddp)) is ddp,
        "compiled_or_eager": find_ddp(CompiledOrEager(ddp)) is ddp, "bare": find_ddp(ddp.module) is None,
    }  # fmt: skip


def ranks_job(rank):
    # A short timeout: a rank left waiting by a bug fails the test instead of hanging it.
    with distributed_session(torch.device("cpu"), timeout_s=60) as job:
        poisoned = global_batches(2)
        poisoned[0][0][1, 0] = float("nan")  # sample 1 of the first global batch: in rank 1's share only
        return {
            "one_step": train(job, micro_batches(global_batches(1), rank, 2), accum_steps=2),
            "three_steps": train(job, micro_batches(global_batches(3), rank, 2), accum_steps=2)["rounds"],
            "short_last_step": train(job, micro_batches(global_batches(3), rank, 2)[:5], accum_steps=2)["rounds"],
            "no_accumulation": train(job, micro_batches(global_batches(2), rank, 1), accum_steps=1)["rounds"],
            "skipped_nan": train(job, micro_batches(poisoned, rank, 1), accum_steps=1, skip_nonfinite=True),
            "found": found_through_wrappers(job),
        }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(ranks_job, tmp_path_factory.mktemp("sync"))


def one_process_step(images, target):
    """One SGD step on the whole global batch, in this process: p - lr * d(mean loss)/dp."""
    model = TwoLayers()
    F.cross_entropy(model(images), target).backward()
    return {name: p.detach() - LR * p.grad for name, p in model.named_parameters()}


def test_two_accumulated_micro_batches_on_two_ranks_make_the_one_process_step(ranks):
    expected = one_process_step(*global_batches(1)[0])
    for result in ranks:
        for name, value in expected.items():
            torch.testing.assert_close(torch.tensor(result["one_step"]["params"][name]), value, rtol=1e-6, atol=1e-7)


def test_one_gradient_all_reduce_per_optimizer_step(ranks):
    for result in ranks:
        assert result["one_step"]["rounds"] == 1  # not one per micro-batch (2)
        assert result["three_steps"] == 3  # 6 micro-batches, K=2
        assert result["short_last_step"] == 3  # 5 micro-batches, K=2: steps of 2, 2 and a last one of 1
        assert result["no_accumulation"] == 2  # the hook does count every backward that synchronises


def test_ranks_skip_a_non_finite_step_together(ranks):
    # The NaN is in rank 1's share only; both ranks skip the first step and take the second one.
    expected = one_process_step(*global_batches(2)[1])
    for result in ranks:
        assert result["skipped_nan"]["skipped"] == 1
        for name, value in expected.items():
            torch.testing.assert_close(torch.tensor(result["skipped_nan"]["params"][name]), value, rtol=1e-6, atol=1e-7)


def test_the_ddp_module_is_found_through_compile_wrappers(ranks):
    assert ranks[0]["found"] == {"plain": True, "compiled": True, "compiled_or_eager": True, "bare": True}
