"""Checkpoints: atomic writes that survive kills and full disks, and one-line errors for anything else."""

import errno
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fbl
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, save_checkpoint
from fbl.errors import ConfigError

ALL_KEYS = "'format_version'/'epoch'/'model'/'optimizer'/'config'/'best'/'torch_rng_state'"
WEIGHTS = 1_000_000  # 4 MB of float32: a write takes long enough to be interrupted


def fbl_state(version, numel=16):
    """A checkpoint in the trainer's layout whose every weight equals ``version``."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": version,
        "model": {"w": torch.full((numel,), float(version))},
        "optimizer": {"state": {}, "param_groups": []},
        "config": {"dataset": "digits-lt"},
        "best": {"top1": 0.5},
        "torch_rng_state": torch.get_rng_state(),
    }


def assert_complete(state, version):
    assert state["epoch"] == version and state["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert torch.equal(state["model"]["w"], torch.full_like(state["model"]["w"], float(version)))


def one_line_error(path):
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- loading


def test_round_trip(tmp_path):
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = fbl_state(3)
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert sorted(loaded) == sorted(state)
    assert_complete(loaded, 3)
    assert torch.equal(loaded["torch_rng_state"], state["torch_rng_state"])
    assert loaded["config"] == state["config"] and loaded["best"] == state["best"]
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3  # a run folder means its last.pt
    assert leftovers(path.parent) == []


def test_files_that_are_not_torch_checkpoints(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    assert (
        one_line_error(tmp_path / "empty.pt")
        == f"not a checkpoint fbl can load safely: {tmp_path / 'empty.pt'} (empty file)"
    )

    (tmp_path / "random.pt").write_bytes(random.Random(0).randbytes(4096))
    (tmp_path / "text.pt").write_text("epoch,loss\n1,0.5\n")
    save_checkpoint(fbl_state(1, numel=10_000), tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    for name, data in [("half.pt", whole[: len(whole) // 2]), ("tail_cut.pt", whole[:-10]), ("head.pt", whole[:100])]:
        (tmp_path / name).write_bytes(data)
    for name in ("random.pt", "text.pt", "half.pt", "tail_cut.pt", "head.pt"):
        message = one_line_error(tmp_path / name)
        assert message.startswith(f"not a checkpoint fbl can load safely: {tmp_path / name} (")


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "marker"
    state = {**fbl_state(1), "config": RunsCommand(f"touch {marker}")}
    path = tmp_path / "crafted.pt"
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state["config"], protocol=2))  # the legacy (non-zip) format
    reason = "it references posix.system, which weights-only loading refuses"
    assert one_line_error(path) == f"not a checkpoint fbl can load safely: {path} ({reason})"
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"a": 1}, f"is not an fbl checkpoint: it has no {ALL_KEYS} (keys: a)"),
        (torch.zeros(3), "is not an fbl checkpoint: it holds a Tensor, not a dict"),
        ({**fbl_state(1), "format_version": "one"}, "is not an fbl checkpoint: 'format_version' is 'one'"),
        ({**fbl_state(1), "model": torch.zeros(2)}, "is not an fbl checkpoint: 'model' is a Tensor, not a dict"),
    ],
)
def test_loadable_files_that_are_not_fbl_checkpoints(tmp_path, content, expected):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    assert one_line_error(path) == f"{path} {expected}"


def test_bare_state_dict_lists_a_few_keys(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({f"layer{i}.weight": torch.zeros(1) for i in range(30)}, path)
    message = one_line_error(path)
    assert "it has no 'format_version'" in message and "... (30 in all)" in message


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({**fbl_state(1), "format_version": CHECKPOINT_FORMAT_VERSION + 1, "new_field": 1}, path)
    assert one_line_error(path) == (
        f"{path} was written by a newer fbl (checkpoint format {CHECKPOINT_FORMAT_VERSION + 1}; "
        f"this fbl reads up to format {CHECKPOINT_FORMAT_VERSION}): upgrade fbl to load it"
    )


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    path = tmp_path / "last.pt"
    save_checkpoint(fbl_state(1), path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing.split(".")[1], no_space)
    with pytest.raises(ConfigError) as err:
        save_checkpoint(fbl_state(2), path)
    monkeypatch.undo()
    assert (
        str(err.value) == f"could not write checkpoint {path}: No space left on device; the previous checkpoint is kept"
    )
    assert_complete(load_checkpoint(path), 1)
    assert leftovers(tmp_path) == []


def test_error_that_is_not_about_the_disk_is_not_reworded(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(fbl_state(1), path)
    with pytest.raises(Exception) as err:  # torch cannot pickle a lambda: a bug, not the user's disk
        save_checkpoint({**fbl_state(2), "config": lambda: None}, path)
    assert not isinstance(err.value, ConfigError)
    assert_complete(load_checkpoint(path), 1)
    assert leftovers(tmp_path) == []


# One child process imports torch once, then forks a writer per request (forking is cheap; a
# fresh interpreter per kill is not). Commands on stdin:
#   save K     a writer saves versions K*1000, K*1000+1, ... to PATH until it is killed
#   limit K N  a writer whose files may not exceed N bytes (RLIMIT_FSIZE) saves version K once
# A writer prints "started PID" first; the parent prints "done STATUS" once the writer is gone.
CHILD = r"""
import os, resource, sys
import torch
torch.set_num_threads(1)
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, save_checkpoint
from fbl.errors import ConfigError

path, numel = sys.argv[1], int(sys.argv[2])
weights = torch.zeros(numel)

def state(version):
    weights.fill_(float(version))
    return {"format_version": CHECKPOINT_FORMAT_VERSION, "epoch": version, "model": {"w": weights},
            "optimizer": {"state": {}, "param_groups": []}, "config": {"dataset": "digits-lt"},
            "best": {"top1": 0.5}, "torch_rng_state": torch.get_rng_state()}

print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    pid = os.fork()
    if pid == 0:
        print("started", os.getpid(), flush=True)
        if command == "save":
            version = int(args[0]) * 1000
            while True:
                save_checkpoint(state(version), path)
                version += 1
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(args[1]), resource.RLIM_INFINITY))
        try:
            save_checkpoint(state(int(args[0])), path)
            print("saved", flush=True)
        except ConfigError as exc:
            print("error", exc, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("done", flush=True)
"""


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    if not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"):
        pytest.skip("needs fork and SIGKILL")
    folder = tmp_path_factory.mktemp("killed")
    path = folder / "last.pt"
    source = [str(Path(fbl.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(source)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(WEIGHTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout.readline().split() == ["ready"]

    def ask(command):
        child.stdin.write(command + "\n")
        child.stdin.flush()
        return child.stdout.readline().split()

    yield path, ask, child
    child.stdin.close()
    child.wait(timeout=60)


def test_killed_writers_never_leave_a_partial_checkpoint(writer):
    path, ask, child = writer
    save_checkpoint(fbl_state(0, numel=WEIGHTS), path)
    rng = random.Random(0)
    seen = [0]
    for k in range(1, 21):
        started, pid = ask(f"save {k}")
        assert started == "started"
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(int(pid), signal.SIGKILL)
        assert child.stdout.readline().split() == ["done"]
        state = load_checkpoint(path)  # must load: the old checkpoint or a complete new one
        version = state["epoch"]
        assert version == seen[-1] or version // 1000 == k, (version, seen)
        assert_complete(state, version)
        seen.append(version)
    # Each kill leaves at most its own temporary file behind, never a damaged checkpoint.
    assert all(name.startswith(".last.pt.") for name in leftovers(path.parent))


def test_write_failing_part_way_keeps_the_previous_checkpoint(writer):
    path, ask, child = writer
    save_checkpoint(fbl_state(7, numel=WEIGHTS), path)
    before = set(leftovers(path.parent))
    assert ask("limit 8 1000000")[0] == "started"  # a 4 MB checkpoint may not exceed 1 MB on disk
    reply = child.stdout.readline().rstrip("\n")
    assert reply == f"error could not write checkpoint {path}: File too large; the previous checkpoint is kept"
    assert child.stdout.readline().split() == ["done"]
    assert_complete(load_checkpoint(path), 7)
    assert set(leftovers(path.parent)) == before


def test_full_disk_at_the_write_call_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(fbl_state(1), path)
    real = os.fdopen

    class FillsUp:
        """The disk fills up half-way through the first write torch.save makes."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FillsUp(real(*args, **kwargs)))
    with pytest.raises(ConfigError) as err:
        save_checkpoint(fbl_state(2, numel=10_000), path)
    monkeypatch.undo()
    kept = "the previous checkpoint is kept"
    assert str(err.value) == f"could not write checkpoint {path}: No space left on device; {kept}"
    assert_complete(load_checkpoint(path), 1)
    assert leftovers(tmp_path) == []


def test_checkpoint_is_readable_like_any_file_the_user_writes(tmp_path):
    # The temporary file comes from mkstemp (private, 0o600); the checkpoint gets 0o666 minus the umask.
    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "best.pt"
    save_checkpoint(fbl_state(1), path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
