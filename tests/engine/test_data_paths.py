import os

from fbl.config import resolve_config
from fbl.engine.data_paths import absolute_path, with_absolute_data_paths


def test_relative_data_folders_become_absolute_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(overrides={"data_dir": "./data", "img_path": "../images"})
    absolute = with_absolute_data_paths(cfg)
    assert absolute.data.data_dir == f"{tmp_path}/data"
    assert absolute.data.img_path == f"{tmp_path.parent}/images"
    assert absolute.flat() | {"data_dir": "./data", "img_path": "../images"} == cfg.flat()  # nothing else changes


def test_absolute_home_and_unset_paths(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert absolute_path("/srv/data/../cifar") == "/srv/cifar"
    assert absolute_path("~/cifar") == "/home/someone/cifar"
    assert absolute_path(None) is None and absolute_path("") == ""
    assert os.path.isabs(absolute_path("data"))
