"""What a run records about how it ran."""

import shutil
import subprocess

import pytest
import torch
from torch import nn

from fbl.engine.execution import CompiledOrEager, Execution
from fbl.engine.provenance import cpu_description, execution_settings, git_state, provenance

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_cpu_model_and_bf16_units_from_cpuinfo():
    assert cpu_description(CPUINFO) == {
        "cpu": "Intel(R) Xeon(R) Platinum 8480+",
        "cpu_amx_bf16": True,
        "cpu_avx512_bf16": True,
    }
    older = CPUINFO.replace(" avx512_bf16 amx_bf16 amx_tile", "")
    assert cpu_description(older)["cpu_amx_bf16"] is False
    assert cpu_description(older)["cpu_avx512_bf16"] is False


def test_compile_mode_actually_used():
    assert execution_settings(Execution(torch.device("cpu"), "bf16", True, False)) == {
        "precision": "bf16",
        "channels_last": True,
        "compile": "eager",
    }
    compiled = CompiledOrEager(nn.Linear(2, 2))
    assert execution_settings(Execution(torch.device("cpu"), compile=True), compiled)["compile"] == "compiled"
    compiled._use_compiled = False  # what a failed first call leaves behind
    assert execution_settings(Execution(torch.device("cpu"), compile=True), compiled)["compile"] == (
        "eager (compile failed)"
    )


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_and_dirty_state_of_the_package_folder(tmp_path):
    package = tmp_path / "repo" / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", ".")
    _git(tmp_path / "repo", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD").strip()
    assert git_state(package) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "repo" / "README").write_text("outside the package: not a change to the code that ran\n")
    assert git_state(package)["git_dirty"] is False
    (package / "new_module.py").write_text("y = 2\n")
    assert git_state(package) == {"git_commit": head, "git_dirty": True}


def test_outside_a_checkout_commit_and_dirty_are_unknown(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}


def test_provenance_record_has_every_field_the_report_shows():
    record = provenance(Execution(torch.device("cpu")), world_size=2, started_at=0.0)
    assert record["world_size"] == 2 and record["device"] == "cpu"
    assert record["started_at"] == "1970-01-01T00:00:00+00:00"
    assert record["torch"] == torch.__version__ and record["threads"] == torch.get_num_threads()
    for key in ("ended_at", "cpu", "cpu_amx_bf16", "cpu_avx512_bf16", "python", "torchvision", "cuda", "fbl",
                "git_commit", "git_dirty", "precision", "channels_last", "compile", "devices"):  # fmt: skip
        assert key in record, key
