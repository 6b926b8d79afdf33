"""Bad input gets one clear line: exit code 2, one ``fbl: error:`` line, no traceback, no results written."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fbl.cli import main, train_parser
from fbl.config import flatten, option_specs, resolve_config, runtime_keys
from fbl.engine.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, save_checkpoint
from fbl.engine.run_folder import RunFolder
from fbl.engine.two_stage import stage1_config
from fbl.errors import ConfigError

FAST = ["--device", "cpu", "--quiet"]
RESULTS = ("summary.json", "metrics.jsonl", "checkpoints")


def one_error_line(capsys, code: int) -> str:
    """The single ``fbl: error:`` line of a refused command (and nothing that looks like a bug)."""
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fbl: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def assert_no_results(folder: Path) -> None:
    assert [name for name in RESULTS if (folder / name).exists()] == []


# (config file content, words the error line must hold). Each is refused before any data is read.
CONFIG_CASES = {
    "lr-string": ("lr: '0.01'", ["lr", "finite number", "'0.01'", "without quotes"]),
    "lr-yaml-exponent-is-text": ("lr: 1e-3", ["lr", "write 0.001"]),
    "lr-list": ("lr: [1, 2]", ["lr", "[1, 2]"]),
    "seed-text": ("seed: abc", ["seed", "an integer", "'abc'"]),
    "limit-batches-float": ("limit_batches: 1.5", ["limit_batches", "an integer or null", "1.5"]),
    "loss-options-int": ("loss_options: 5", ["loss_options", "a mapping"]),
    "mixup-maybe": ("mixup: maybe", ["mixup", "true or false", "'maybe'"]),
    "epochs-bool": ("epochs: true", ["epochs", "an integer", "True"]),
    "lr-bool": ("lr: yes", ["lr", "finite number", "True"]),
    "lambda-nan": ("lambda_: .nan", ["lambda_", "finite number"]),
    "milestones-not-a-list": ("lr_milestones: 0.5", ["lr_milestones", "a list of finite numbers"]),
    "stage2-from-int": ("stage2_from: 5", ["stage2_from", "a string or null"]),
    "epochs-zero": ("epochs: 0", ["epochs", "positive integer"]),
    "batch-size-zero": ("batch_size: 0", ["batch_size", "positive integer"]),
    "eval-every-zero": ("eval_every: 0", ["eval_every", "positive integer"]),
    "lambda-negative": ("lambda_: -1", ["lambda_", ">= 0 but got -1"]),
    "lr-negative": ("lr: -0.1", ["positive learning rate", "-0.1"]),
    "drw-epoch-past-the-run": ("epochs: 10\ndrw_epoch: 10", ["drw_epoch", "epochs (10)"]),
    "imb-factor-zero": ("imb_factor: 0", ["imb_factor in (0, 1]"]),
    "imb-factor-above-one": ("imb_factor: 100", ["imb_factor in (0, 1]"]),
    "seed-negative": ("seed: -1", ["seed"]),
    "not-a-mapping": ("- lr\n- 0.1", ["must hold a mapping", "list"]),
    "scalar-document": ("just words", ["must hold a mapping", "str"]),
    "invalid-yaml": ("lr: [0.1", ["not valid YAML"]),
    "binary-file": (bytes(range(128, 256)), ["not a text (UTF-8) file"]),
    "unknown-key": ("lamda: 3", ["'lamda'", "did you mean 'lambda_'"]),
    "seed-script-key": ("learning_rate: 0.1", ["'learning_rate'", "did you mean 'lr'"]),
    "unknown-preset": ("preset: cifar10lt", ["did you mean 'cifar10-lt'", "digits-lt"]),
    "unknown-arch": ("arch: resnet33", ["did you mean 'resnet32'", "digits-cnn"]),
    "unknown-loss": ("loss: focall", ["did you mean 'focal'", "ldam"]),
    "unknown-train-rule": ("train_rule: drv", ["did you mean 'drw'", "balanced-rs"]),
    "unknown-schedule": ("alpha_schedule: parabolc", ["did you mean 'parabolic'", "cosine"]),
}


@pytest.mark.parametrize("content, words", list(CONFIG_CASES.values()), ids=list(CONFIG_CASES))
def test_bad_config_file_is_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content + "\n")
    out = tmp_path / "out"
    line = one_error_line(capsys, main(["train", "--config", str(path), "--out", str(out), *FAST]))
    for word in words:
        assert word in line, line
    assert_no_results(out)


FLAG_CASES = {
    "epochs-zero": (["--epochs", "0"], ["epochs", "positive integer"]),
    "epochs-text": (["--epochs", "five"], ["invalid int"]),
    "lr-negative": (["--lr", "-1"], ["positive learning rate"]),
    "mixup-maybe": (["--mixup", "maybe"], ["true or false"]),
    "unknown-preset": (["--preset", "nope"], ["Unknown preset", "cifar10-lt"]),
    "unknown-loss": (["--loss", "fbll"], ["did you mean 'fbl'"]),
    "missing-config-file": (["--config", "/no/such.yaml"], ["/no/such.yaml does not exist"]),
}


@pytest.mark.parametrize("flags, words", list(FLAG_CASES.values()), ids=list(FLAG_CASES))
def test_bad_flag_is_one_line(tmp_path, capsys, flags, words):
    out = tmp_path / "out"
    line = one_error_line(capsys, main(["train", *flags, "--out", str(out), *FAST]))
    for word in words:
        assert word in line, line
    assert_no_results(out)


def _foreign_config_state():
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION, "epoch": 1, "model": {}, "optimizer": {},
        "config": {"epochz": 3}, "best": None, "torch_rng_state": torch.get_rng_state(),
    }  # fmt: skip


def _write_eval_target(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "missing":
        return path
    if kind == "folder-without-checkpoints":
        path = tmp_path / "run"
        path.mkdir()
    elif kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 16)
    elif kind == "dict":
        torch.save({"a": 1}, path)
    elif kind == "bare-tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "unknown-config-key":
        torch.save(_foreign_config_state(), path)
    return path


EVAL_CASES = {
    "missing": "does not exist",
    "folder-without-checkpoints": "is not a run folder with a checkpoint",
    "zero-bytes": "(empty file)",
    "random-bytes": "(truncated or not a torch file)",
    "dict": "is not an fbl checkpoint: it has no 'format_version'",
    "bare-tensor": "it holds a Tensor, not a dict",
    "unknown-config-key": "Unknown config key(s) 'epochz' (did you mean 'epochs'?)",
}


@pytest.mark.parametrize("kind, needle", list(EVAL_CASES.items()), ids=list(EVAL_CASES))
def test_eval_of_what_is_not_a_checkpoint_is_one_line(tmp_path, capsys, kind, needle):
    path = _write_eval_target(kind, tmp_path)
    line = one_error_line(capsys, main(["eval", str(path), *FAST]))
    assert needle in line and str(path) in line, line


def test_every_field_a_resume_may_refuse_is_named_by_a_real_flag():
    spellings = {option for action in train_parser()._actions for option in action.option_strings}
    assert {spec.flag for key, spec in option_specs().items() if key not in runtime_keys()} <= spellings


# ---- runs: --resume and --stage2-from -------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--preset", "digits-lt", "--epochs", "2", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture
def run_copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--lr", "0.5"], "--lr"),
        (["--lr", "0.5", "--loss", "ce"], "--loss, --lr"),
        (["--lambda_", "5"], "--lambda"),
        (["--epochs", "1"], "--epochs"),
        (["--train-rule", "drw", "--mixup"], "--mixup, --train-rule"),
        (["--out", "elsewhere"], "--out"),
    ],
    ids=["lr", "lr-and-loss", "lambda", "fewer-epochs", "rule-and-mixup", "other-out"],
)
def test_resume_with_flags_that_change_the_run_is_refused(run_copy, capsys, flags, named):
    before = snapshot(run_copy)
    line = one_error_line(capsys, main(["train", "--resume", str(run_copy), *flags, *FAST]))
    prefix = "fbl: error: --resume continues the run as configured; these flags would change it: "
    assert line.startswith(f"{prefix}{named} (start a new run with them instead"), line
    assert ("--epochs may only grow beyond 2, which extends the run" in line) == (named == "--epochs"), line
    assert snapshot(run_copy) == before


def test_resume_with_more_epochs_extends_the_run(run_copy, monkeypatch, caplog):
    import fbl.engine.trainer as trainer

    limits = []

    def recording(*args, **kwargs):
        limits.append(kwargs["limit_batches"])
        return real(*args, **kwargs)

    real = trainer.train_one_epoch
    monkeypatch.setattr(trainer, "train_one_epoch", recording)
    # Flags equal to the run's own values (the preset's loss, spelled otherwise; its own folder) are not changes.
    argv = ["--resume", str(run_copy), "--epochs", "3", "--limit-batches", "1", "--loss", "FeaBal"]
    assert main(["train", *argv, "--out", str(run_copy), *FAST]) == 0
    assert "--epochs 3 extends the run from 2 epochs" in caplog.text and "from epoch 3 on" in caplog.text
    assert limits == [1]  # one epoch ran, and --limit-batches (a runtime option) was honoured
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    # The alpha curriculum of the 3-epoch run: (e / (0.95 E))^2 with E = 3 (it was E = 2 before).
    assert records[2]["alpha"] == pytest.approx((2 / 2.85) ** 2)
    assert records[1]["alpha"] == pytest.approx((1 / 1.9) ** 2)
    assert load_checkpoint(run_copy)["config"]["optim"]["epochs"] == 3
    # config.yaml keeps how the run started; the resume that extended it is recorded beside it
    assert flatten(yaml.safe_load((run_copy / "config.yaml").read_text()))["epochs"] == 2
    assert RunFolder(run_copy).effective_config()["epochs"] == 3


def test_resume_from_an_older_best_checkpoint_is_refused(run_copy, capsys):
    best = run_copy / "checkpoints" / "best.pt"
    save_checkpoint({**load_checkpoint(best), "epoch": 1}, best)  # best at the first of two epochs
    before = snapshot(run_copy)
    line = one_error_line(capsys, main(["train", "--resume", str(best), *FAST]))
    assert f"{best} holds epoch 1 of a run that went on to epoch 2" in line
    assert line.endswith(f"resume from the run folder: --resume {run_copy}")
    assert snapshot(run_copy) == before


def test_resume_from_best_checkpoint_of_the_last_epoch_is_allowed(run_copy):
    shutil.copyfile(run_copy / "checkpoints" / "last.pt", run_copy / "checkpoints" / "best.pt")
    assert main(["train", "--resume", str(run_copy / "checkpoints" / "best.pt"), *FAST]) == 0
    assert (run_copy / "summary.json").is_file()


def test_stage2_on_another_dataset_is_refused(run, tmp_path, capsys):
    out = tmp_path / "crt"
    argv = ["train", "--stage2-from", str(run), "--dataset", "cifar10", "--out", str(out), *FAST]
    line = one_error_line(capsys, main(argv))
    assert f"--stage2-from {run} is a digits-lt run but the dataset asked for is cifar10" in line
    assert "drop --dataset" in line
    assert_no_results(out)
    # The same dataset, in any spelling, is what stage 2 does anyway.
    overrides = {"stage2_from": str(run), "dataset": "Digits_LT"}
    assert resolve_config(overrides=overrides, stage1_config=stage1_config(None, overrides)).data.dataset == "digits-lt"


# ---- the config loader never fails with anything but a ConfigError ----------------------------------

_NAMES = ["ce", "fbl", "ldam", "drw", "none", "auto", "normed", "cifar10", "digits-lt", "resnet32", "fp16", "step"]
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(_NAMES),
)  # fmt: skip
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_keys = st.one_of(st.sampled_from(sorted(option_specs())), st.text(max_size=12))
_yaml_docs = st.dictionaries(_keys, _values, max_size=5).map(lambda d: yaml.safe_dump(d).encode())


def _typed(expected):
    """Values of the annotated type, so that the checks after the type check are reached too."""
    if typing.get_origin(expected) in (types.UnionType, typing.Union):
        return st.one_of([_typed(option) for option in typing.get_args(expected)])
    if typing.get_origin(expected) is list:
        return st.lists(_typed(*typing.get_args(expected)), max_size=3)
    return {
        int: st.integers(-3, 300) | st.integers(),
        float: st.floats(-2, 2) | st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        str: st.sampled_from(_NAMES) | st.text(max_size=12),
        dict: st.dictionaries(st.sampled_from(["gamma", "max_m", "s", "tau", "beta", "x"]), _scalars, max_size=2),
        type(None): st.none(),
    }[expected]


_typed_docs = st.lists(
    st.sampled_from(sorted(option_specs())).flatmap(
        lambda name: st.tuples(st.just(name), _typed(option_specs()[name].type))
    ),
    max_size=6,
).map(lambda pairs: yaml.safe_dump(dict(pairs)).encode())
_yamlish = st.lists(
    st.sampled_from([*sorted(option_specs()), ":", " ", "\n", "- ", "[", "]", "{", "}", "'", "1", ".5"])
)
_config_files = st.one_of(
    _yaml_docs,
    _typed_docs,
    _yamlish.map(lambda parts: "".join(parts).encode()),
    st.text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
)


@pytest.fixture(scope="module")
def config_path():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "config.yaml"


@settings(max_examples=200, deadline=None)
@given(content=_config_files)
def test_any_config_file_loads_or_is_a_config_error(config_path, content):
    config_path.write_bytes(content)
    try:
        # What `fbl train --config FILE` does before it reads any data.
        resolve_config(config_file=str(config_path), stage1_config=stage1_config(str(config_path), {}))
    except ConfigError as exc:
        assert "\n" not in str(exc)


# ---- image files: one line naming the file, and never a hang ---------------------------------------


def _image_tree(root: Path, splits: dict, unreadable: str | None = None) -> Path:
    """``root/<split>/c<k>/<i>.png`` (8x8 grey PNGs); every image of split ``unreadable`` is garbage."""
    for split, per_class in splits.items():
        for cls, count in enumerate(per_class):
            for i in range(count):
                path = root / split / f"c{cls}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                if split == unreadable:
                    path.write_bytes(b"not an image")
                else:
                    Image.new("L", (8, 8), 40 * cls).save(path)
    return root


def test_folder_with_only_train_is_one_line_before_training(tmp_path, capsys):
    root = _image_tree(tmp_path / "data", {"train": (2, 1)})
    out = tmp_path / "out"
    argv = ["train", "--dataset", "folder", "--data-dir", str(root), "--out", str(out), *FAST]
    line = one_error_line(capsys, main(argv))
    assert line == (
        f"fbl: error: {root} has no val/ or test/ images, and a run is selected and reported on one: add "
        "ROOT/val/<class>/... or ROOT/test/<class>/... with the class folders of train/"
    )
    assert_no_results(out)


def test_unreadable_image_read_in_a_worker_process_is_one_line(tmp_path, capsys):
    root = _image_tree(tmp_path / "data", {"train": (2, 2), "val": (1, 1)}, unreadable="train")
    out = tmp_path / "out"
    argv = ["train", "--dataset", "folder", "--data-dir", str(root), "--arch", "resnet32", "--image-size", "32",
            "--workers", "2", "--epochs", "1", "--batch_size", "2", "--no-compile", "--out", str(out)]  # fmt: skip
    line = one_error_line(capsys, main([*argv, *FAST]))
    # Every training image is garbage; which one the first batch holds depends on the shuffle.
    reason = "not an image in a format Pillow can decode"
    pattern = rf"fbl: error: Cannot read image {re.escape(str(root))}/train/c[01]/[01]\.png: {reason}"
    assert re.fullmatch(pattern, line), line
    assert_no_results(out)


def test_data_check_of_a_tree_holding_a_fifo_finishes(tmp_path):
    root = _image_tree(tmp_path / "data", {"train": (2, 1), "val": (1, 1)})
    os.mkfifo(root / "train" / "c0" / "pipe.jpg")  # opening it to read would wait for a writer forever
    argv = ["data", "check", "--dataset", "folder", "--data-dir", str(root), "--workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # In a child process with a deadline: a regression hangs the child, not the test session.
    done = subprocess.run([sys.executable, "-m", "fbl", *argv], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "train: 3 images, 0 unreadable" in done.stdout and "val: 2 images, 0 unreadable" in done.stdout
    assert "Skipped 1 entries named like images that are not regular files" in done.stderr


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "is empty (0 bytes)"), (b"101\n", "is not a torch file (text or another format)")],
    ids=["empty", "text"],
)
def test_bad_pretrained_weights_file_is_one_line(tmp_path, capsys, content, needle):
    weights = tmp_path / "w.pth"
    weights.write_bytes(content)
    out = tmp_path / "out"
    argv = ["train", "--preset", "digits-lt", "--arch", "resnet50", "--pretrained-weights", str(weights)]
    line = one_error_line(capsys, main([*argv, "--out", str(out), *FAST]))
    assert line.startswith(f"fbl: error: Pretrained weights file {weights} {needle}"), line
    assert_no_results(out)


# ---- fbl eval: the data must be the data the run was trained on ----------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A 1-epoch run on a two-class folder tree (3 and 1 training images) and the tree."""
    tmp = tmp_path_factory.mktemp("folder_run")
    root = _image_tree(tmp / "data", {"train": (3, 1), "test": (1, 1)})
    out = tmp / "run"
    argv = ["train", "--dataset", "folder", "--data-dir", str(root), "--arch", "resnet32", "--image-size", "32",
            "--workers", "0", "--epochs", "1", "--batch_size", "2", "--no-compile", "--out", str(out)]  # fmt: skip
    assert main([*argv, *FAST]) == 0
    return out, root


def _changed_tree(root: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "changed"
    shutil.copytree(root, copy)
    for split in ("train", "test"):
        change(copy / split)
    return copy


def _swap(split: Path) -> None:
    (split / "c0").rename(split / "tmp")
    (split / "c1").rename(split / "c0")
    (split / "tmp").rename(split / "c1")


def _rename(split: Path) -> None:
    (split / "c1").rename(split / "d1")


def _add_class(split: Path) -> None:
    shutil.copytree(split / "c1", split / "c2")


def test_the_summary_records_the_data_the_run_was_trained_on(folder_run):
    summary = json.loads((folder_run[0] / "summary.json").read_text())
    assert summary["class_names"] == ["c0", "c1"] and summary["class_counts"] == [3, 1]


@pytest.mark.parametrize(
    "change, words",
    [
        (_swap, "class 0 of the run of {run} had 3 training images, in the data here it has 1"),
        (_rename, "class 1 of the run of {run} is 'c1', in the data here it is 'd1'"),
        (_add_class, "the run of {run} was trained on 2 classes, the folder data here has 3"),
    ],
    ids=["class-folders-swapped", "class-renamed", "another-class-count"],
)
def test_eval_on_other_data_than_the_run_was_trained_on_is_one_line(folder_run, tmp_path, capsys, change, words):
    run, root = folder_run
    changed = _changed_tree(root, tmp_path, change)
    line = one_error_line(capsys, main(["eval", str(run), "--data-dir", str(changed), *FAST]))
    assert line == f"fbl: error: {words.format(run=run)}; is the data folder the one the run of {run} was trained on?"


def test_eval_of_an_unfinished_run_on_another_class_count_is_one_line(folder_run, tmp_path, capsys):
    run, root = folder_run
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()  # no record: the classifier's shape is what is left to check
    changed = _changed_tree(root, tmp_path, _add_class)
    line = one_error_line(capsys, main(["eval", str(unfinished), "--data-dir", str(changed), *FAST]))
    assert line == (
        f"fbl: error: the weights in {unfinished / 'checkpoints' / 'last.pt'} do not fit a resnet32 for the 3 classes "
        "of the folder data here; is the data folder the one the run was trained on?"
    )


def test_eval_on_the_data_the_run_was_trained_on_still_works(folder_run, capsys):
    run, root = folder_run
    assert main(["eval", str(run), "--data-dir", str(root), "--json", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] is not None
