"""The CLI: the seed README's commands, booleans, and one-line user errors."""

import json
import shlex
import subprocess
import sys

import pytest
import torch

from fbl.cli import _drop_lone_slashes, build_parser, main, train_overrides, train_parser
from fbl.config import resolve_config
from fbl.reports.console import format_summary

# The paper's README commands as published: continuation lines end in ' /' (not ' \').
SEED_COMMANDS = {
    "cifar10": """python train.py --arch resnet32 /
                  --dataset cifar10 --data_path './dataset/data_img' /
                  --gpu 3 /
                  --loss_type 'FeaBal' --batch_size 64 --learning_rate 0.1 --lambda_ 60""",
    "cifar100": """python train.py --arch resnet32 /
                  --dataset cifar100 --data_path './dataset/data_img' /
                  --gpu 3 /
                  --loss_type 'FeaBal' --batch_size 64 --learning_rate 0.1 --lambda_ 60""",
    "imagenet": """python train.py --arch resnet50 /
                  --dataset imagenet --data_path './dataset/data_txt' --img_path '/home/datasets/imagenet/ILSVRC2012_dataset' /
                  --gpu 3 /
                  --loss_type 'FeaBal' --batch_size 512 --learning_rate 0.2 --lambda_ 150""",
    "inat": """python train.py --arch resnet50 /
                  --dataset inat --data_path './dataset/data_txt' --img_path '/home/datasets/iNaturelist2018' /
                  --gpu 3 /
                  --loss_type 'FeaBal' --batch_size 512  --learning_rate 0.2 --lambda_ 150""",
    "place365": """python train.py --arch resnet152_p /
                  --dataset place365 --data_path './dataset/data_txt' --img_path '/home/datasets/Places365' /
                  --gpu 3 /
                  --loss_type 'FeaBal' --batch_size 512  --learning_rate 0.2 --lambda_ 150""",
}


def seed_argv(name):
    words = shlex.split(SEED_COMMANDS[name].replace("\n", " "))
    assert words[:2] == ["python", "train.py"]
    return words[2:]


def resolved(argv):
    namespace = build_parser().parse_args(["train", *_drop_lone_slashes(argv)])
    overrides, preset, config_file = train_overrides(namespace)
    return resolve_config(preset, config_file, overrides)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_seed_cifar_commands_resolve_to_the_paper_settings(name):
    cfg = resolved(seed_argv(name))
    assert (cfg.data.dataset, cfg.model.arch, cfg.loss.loss, cfg.run.device) == (name, "resnet32", "fbl", "cuda:3")
    assert (cfg.optim.batch_size, cfg.optim.lr, cfg.loss.lambda_, cfg.optim.epochs, cfg.optim.seed) == (
        64,
        0.1,
        60.0,
        200,
        123,
    )
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.data.imb_factor, cfg.data.imb_type) == (
        0.9,
        2e-4,
        0.01,
        "exp",
    )
    assert cfg.data.data_dir == "./dataset/data_img"
    assert cfg.loss.alpha_schedule == "parabolic"


@pytest.mark.parametrize("name", ["imagenet", "inat", "place365"])
def test_seed_large_dataset_commands_parse(name):
    cfg = resolved(seed_argv(name))
    assert (cfg.data.dataset, cfg.loss.loss, cfg.optim.batch_size, cfg.optim.lr, cfg.loss.lambda_) == (
        name,
        "fbl",
        512,
        0.2,
        150.0,
    )
    assert cfg.data.img_path.startswith("/home/datasets/")


def test_lone_slashes_are_dropped_with_a_warning(caplog):
    assert _drop_lone_slashes(["--arch", "resnet32", "/", "--epochs", "2"]) == ["--arch", "resnet32", "--epochs", "2"]
    assert "lone '/'" in caplog.text


@pytest.mark.skipif(torch.cuda.device_count() > 3, reason="this machine has a cuda:3")
def test_seed_command_without_that_gpu_is_one_clear_line(capsys):
    assert main(["train", *seed_argv("cifar10")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fbl: error:")]
    assert len(errors) == 1 and "cuda:3" in errors[0] and "--device cpu" in errors[0] and "Traceback" not in err


@pytest.mark.parametrize("name", ["imagenet", "inat", "place365"])
def test_large_datasets_without_their_lists_say_which_file(name, capsys):
    argv = seed_argv(name) + ["--device", "cpu"]
    i = argv.index("--gpu")  # --gpu 3 and --device cpu would disagree

    del argv[i : i + 2]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fbl: error:")]
    assert len(errors) == 1 and "_train.txt" in errors[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], False),
        (["--mixup"], True),
        (["--mixup", "true"], True),
        (["--mixup", "False"], False),
        (["--mixup=0"], False),
        (["--no-mixup"], False),
    ],
)
def test_booleans_are_real_booleans(flags, expected):
    assert resolved(["--dataset", "cifar10", *flags]).loss.mixup is expected


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--loss_type", "nope"], "fbl"),
        (["train", "--preset", "nope"], "cifar10-lt"),
        (["train", "--arch", "resnet33"], "resnet32"),
        (["train", "--arch", "resnet32", "--device", "cpu"], "cannot take the 1x8x8 images"),
        (["train", "--mixup", "maybe"], "true or false"),
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--imb_factor", "100"], "imb_factor"),
        (["train", "--alpha-schedule", "nope"], "parabolic"),
        (["train", "--device", "tpu"], "cpu"),
        (["train", "--epochs", "five"], "invalid int"),
        (["eval", "/no/such/checkpoint.pt"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fbl: error:")]
    assert len(errors) == 1 and needle in errors[0], err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == errors[0]


def test_presets_lists_the_paper_settings(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("cifar10-lt", "cifar100-lt", "digits-lt"):
        assert name in out
    assert "lambda_=60.0" in out and "ICME 2022" in out
    # each preset shows what it sets itself, not what it inherits and does not use (CE has no lambda_)
    lines = out.splitlines()
    ce = lines[lines.index(next(line for line in lines if line.startswith("cifar10-lt-ce:"))) + 1]
    assert "loss=ce" in ce and "lambda_" not in ce
    ride = lines[lines.index(next(line for line in lines if line.startswith("cifar10-lt-ride:"))) + 1]
    assert "nesterov=True" in ride and "rotate=15.0" in ride and "lambda_" not in ride
    experts = lines[lines.index(next(line for line in lines if line.startswith("cifar10-lt-fbl-experts:"))) + 1]
    assert "expert_lambdas=[15.0, 30.0, 60.0]" in experts


def test_yaml_config_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: cifar100\nepochs: 30\nlambda_: 10\n")
    namespace = build_parser().parse_args(["train", "--config", str(path), "--epochs", "40"])
    overrides, preset, config_file = train_overrides(namespace)
    cfg = resolve_config(preset, config_file, overrides)
    assert (cfg.data.dataset, cfg.model.arch, cfg.optim.epochs, cfg.loss.lambda_) == ("cifar100", "resnet32", 40, 10.0)


def test_seed_flags_without_effect_say_so(tmp_path, caplog):
    argv = [
        "train",
        "--epochs",
        "1",
        "--limit-batches",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "-j",
        "8",
        "--print_freq",
        "5",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 0
    # --workers drives the image-file datasets' DataLoader; on the in-memory path it is simply unused.
    assert "--workers has no effect" not in caplog.text and "--print_freq has no effect" in caplog.text


def test_root_train_py_runs_the_same_cli():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "train.py"
    done = subprocess.run([sys.executable, str(script), "--loss_type", "nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "Unknown loss 'nope'" in done.stderr


def test_every_config_field_has_a_flag_and_every_flag_a_field():
    # The flags and TrainConfig are two lists; this keeps them in step.
    from fbl.config import option_specs

    dests = {a.dest for a in train_parser()._actions if a.dest != "help"}
    assert dests - set(option_specs()) == {"config", "gpu"}  # resolved by the CLI itself
    assert set(option_specs()) - dests == set()


def test_lr_schedule_flags_take_lists():
    cfg = resolved(["--lr-milestones", "0.6,0.8", "--lr-decay", "0.1,0.01", "--epochs", "10"])
    assert cfg.optim.lr_milestones == [0.6, 0.8] and cfg.optim.lr_decay == [0.1, 0.01]


def test_a_list_flag_with_a_word_in_it_is_one_line(capsys):
    assert main(["train", "--lr-milestones", "0.6,late", "--device", "cpu"]) == 2
    assert "argument --lr-milestones: expected comma-separated numbers but got '0.6,late'" in capsys.readouterr().err


def test_summary_table_lists_extra_evaluation_splits_at_the_last_epoch():
    metrics = {"top1": 68.07, "top5": 96.34, "many": 64.4, "medium": 82.75, "few": None}
    summary = {
        "last": metrics,
        "last_extra": {"test_lossless": {**metrics, "top1": 81.0}},
        "best": {**metrics, "top1": 69.17, "epoch": 189},
        "best_selected_on": "the test set",
        "run_dir": "runs/x",
    }
    lines = format_summary(summary).splitlines()
    assert lines[1].split()[:3] == ["last", "epoch", "68.07"]
    assert lines[2].split()[:4] == ["last", "epoch,", "test_lossless", "81.00"]
    assert lines[3].split()[:4] == ["best", "(epoch", "190)*", "69.17"]  # index 189 is the 190th epoch


def test_epochs_are_counted_from_1_wherever_people_read_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    # run folders store the epoch index (0, 1); the log, the summary table and the report say 1 and 2
    assert [r["epoch"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [0, 1]
    assert summary["last"]["epoch"] == 1
    assert [line.split()[:2] for line in printed.err.splitlines() if line.startswith("epoch ")] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    assert f"best (epoch {summary['best']['epoch'] + 1})*" in printed.out
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "| fbl λ=30 | 1 | 2 |" in markdown  # digits-lt's FBL, one seed, last epoch 2 of 2


def test_presets_are_listed_without_importing_torch():
    # fbl.config imports torch through the registries (seconds); listing the preset files needs none of it.
    code = "import sys; from fbl.cli import cmd_presets; cmd_presets(None); assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "digits-lt: Small CNN" in done.stdout


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
def test_under_torchrun_only_rank_0_prints_an_error(monkeypatch, capsys, rank, printed):
    monkeypatch.setenv("RANK", rank)
    assert main(["presets", "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert ("fbl: error: unrecognized arguments: --no-such-flag" in err) == printed
    if not printed:
        assert err == ""


def test_help_presets_and_argument_errors_do_not_wait_for_torch():
    import subprocess
    import sys

    script = (
        "import sys, io, contextlib\n"
        "from fbl.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = (main(['presets']), main(['compare', '--losses', 'ce', '--seeds', '1,x', '--out', 'o']))\n"
        "    codes += (main([]), main(['trian']), main(['train', '--epochs', 'x']))\n"
        "    for argv in (['--help'], ['train', '--help']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exit:\n"
        "            codes += (exit.code,)\n"
        "print(codes, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["(0,", "2,", "0,", "2,", "2,", "0,", "0)", "False"]
