"""The seed README's ImageNet-LT, iNaturalist 2018 and Places-LT commands, and `--dataset folder`,
train end to end on generated JPEG trees in the benchmarks' own list format (tiny images, 2 batches)."""

import io
import json
import shlex

import pytest
import torch
import yaml
from PIL import Image

from fbl.cli import main
from fbl.config import flatten
from tests.test_cli import SEED_COMMANDS

NUM_CLASSES = {"imagenet": 1000, "inat": 8142, "place365": 365}
LISTS = {
    "imagenet": ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "inat": ("iNaturalist18_train.txt", "iNaturalist18_val.txt", None),
    "place365": ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
}
SMALL = ["--device", "cpu", "--epochs", "1", "--limit-batches", "2", "--batch_size", "2", "--image-size", "32",
         "--workers", "0", "--quiet", "--no-compile"]  # fmt: skip


def _jpeg_bytes(shade: int) -> bytes:
    """A 40x36 JPEG of ``shade`` with a pixel-level texture: crops of one flat colour give a 2-image batch
    zero variance in BatchNorm, whose 1/sqrt(eps) gain through ResNet-50's 53 layers can overflow."""
    pixels = torch.Generator().manual_seed(shade)
    noise = torch.randint(0, 64, (36, 40, 3), generator=pixels, dtype=torch.uint8)
    base = torch.tensor([shade, 255 - shade, 128], dtype=torch.int32).clamp(0, 191)
    image = Image.fromarray((noise.int() + base).clamp(0, 255).to(torch.uint8).numpy())
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_lists(root, name: str) -> None:
    """Every class once in train (class c twice when c is even, so counts differ) and once per eval list."""
    images = root / "images"
    data = [_jpeg_bytes(shade) for shade in (0, 90, 180)]
    for split, file in zip(("train", "val", "test"), LISTS[name], strict=True):
        if file is None:
            continue
        lines = []
        for cls in range(NUM_CLASSES[name]):
            for k in range(2 if split == "train" and cls % 2 == 0 else 1):
                rel = f"{split}/{cls}/{k}.jpg"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                (images / rel).write_bytes(data[(cls + k) % 3])
                lines.append(f"{rel} {cls}")
        (root / file).write_text("\n".join(lines) + "\n")


def _seed_argv(name: str, root) -> list[str]:
    argv = [a for a in shlex.split(SEED_COMMANDS[name].replace("\n", " "))[2:] if a != "/"]
    argv[argv.index("--gpu") : argv.index("--gpu") + 2] = []  # this machine has no cuda:3
    argv[argv.index("--data_path") + 1] = str(root)
    argv[argv.index("--img_path") + 1] = str(root / "images")
    return argv


@pytest.mark.parametrize("name", ["imagenet", "inat", "place365"])
def test_seed_command_trains_on_a_generated_tree(name, tmp_path):
    _write_lists(tmp_path, name)
    extra = []
    if name == "place365":
        from torchvision.models import resnet152

        weights = tmp_path / "resnet152.pth"
        torch.save(resnet152().state_dict(), weights)
        extra = ["--pretrained-weights", str(weights), "--no-pretrained"]
    out = tmp_path / "run"
    assert main(["train", *_seed_argv(name, tmp_path), *SMALL, *extra, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["class_counts"]) == NUM_CLASSES[name]
    assert summary["class_counts"] == sorted(summary["class_counts"], reverse=True)  # re-indexed by count
    assert summary["reported_on"] == ("val" if name == "inat" else "test")
    cfg = flatten(yaml.safe_load((out / "config.yaml").read_text()))
    assert (cfg["batch_size"], cfg["lambda_"], cfg["lr"]) == (2, 150.0, 0.2)


def test_eval_and_crt_of_a_pretrained_places_run_need_no_imagenet_weights_again(tmp_path, capsys):
    # Stage 1 starts from ImageNet weights (required); evaluating it and its cRT stage 2 load every
    # weight from the run's own checkpoint, so neither asks for --pretrained-weights again.
    from torchvision.models import resnet152

    _write_lists(tmp_path, "place365")
    weights = tmp_path / "resnet152.pth"
    torch.save(resnet152().state_dict(), weights)
    stage1 = tmp_path / "places"
    flags = [*SMALL, "--pretrained-weights", str(weights), "--no-pretrained", "--out", str(stage1)]
    assert main(["train", *_seed_argv("place365", tmp_path), *flags]) == 0
    weights.unlink()  # gone: nothing after stage 1 may need it
    capsys.readouterr()
    assert main(["eval", str(stage1), "--device", "cpu", "--limit-batches", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] is not None
    crt = tmp_path / "crt"
    stage2 = ["--stage2-from", str(stage1), "--epochs", "1", "--limit-batches", "2", "--workers", "0", "--quiet"]
    assert main(["train", *stage2, "--no-compile", "--device", "cpu", "--out", str(crt)]) == 0
    config = flatten(yaml.safe_load((crt / "config.yaml").read_text()))
    assert (config["arch"], config["loss"], config["train_rule"]) == ("resnet152_p", "ce", "balanced-rs")
    assert config["img_path"] == str(tmp_path / "images")
    assert config["image_size"] == 32  # the classifier is retrained on features of the stage-1 image size


def test_image_folder_dataset_trains(tmp_path):
    data = [_jpeg_bytes(shade) for shade in (0, 120, 240)]
    for split, per_class in (("train", (5, 2, 1)), ("val", (1, 1, 1)), ("test", (2, 2, 2))):
        for cls, count in enumerate(per_class):
            for k in range(count):
                path = tmp_path / split / f"class_{cls}" / f"{k}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data[cls])
    out = tmp_path / "run"
    argv = ["train", "--dataset", "folder", "--data-dir", str(tmp_path), "--arch", "resnet50", *SMALL]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_counts"] == [5, 2, 1] and summary["selected"]["on"] == "val"


def test_a_missing_image_names_the_file(tmp_path, capsys):
    _write_lists(tmp_path, "place365")
    (tmp_path / "images" / "train" / "0" / "0.jpg").unlink()
    weights = tmp_path / "w.pth"
    from torchvision.models import resnet152

    torch.save(resnet152().state_dict(), weights)
    argv = [*_seed_argv("place365", tmp_path), *SMALL, "--pretrained-weights", str(weights)]
    code = main(["train", *argv, "--limit-batches", "400", "--batch_size", "64", "--out", str(tmp_path / "r")])
    assert code == 2 and "0.jpg" in capsys.readouterr().err


def test_data_check_counts_every_split_and_names_unreadable_images(tmp_path, capsys):
    _write_lists(tmp_path, "place365")
    broken = tmp_path / "images" / "val" / "3" / "0.jpg"
    broken.write_bytes(b"not a jpeg")
    argv = ["data", "check", "--dataset", "place365", "--data_path", str(tmp_path)]
    assert main([*argv, "--img_path", str(tmp_path / "images"), "--workers", "0"]) == 1
    out = capsys.readouterr().out
    assert "place365: 365 classes" in out and "train: 548 images, 0 unreadable" in out
    assert "val: 365 images, 1 unreadable" in out and str(broken) in out


def test_skip_bad_images_drops_and_counts_them_in_the_summary(tmp_path):
    _write_lists(tmp_path, "place365")
    (tmp_path / "images" / "train" / "0" / "0.jpg").write_bytes(b"broken")
    weights = tmp_path / "w.pth"
    from torchvision.models import resnet152

    torch.save(resnet152().state_dict(), weights)
    argv = [*_seed_argv("place365", tmp_path), *SMALL, "--pretrained-weights", str(weights), "--skip-bad-images"]
    out = tmp_path / "r"
    assert main(["train", *argv, "--limit-batches", "400", "--batch_size", "64", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["skipped_train_images"] == 1
