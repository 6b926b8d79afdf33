"""fbl report on real (tiny) run folders: every figure a valid PNG, the html self-contained; a bad --out is one line."""

import base64
import re

import pytest

from fbl.cli import main

from ._disks import read_only_folder


def test_report_from_trained_runs(tmp_path):
    for loss in ("ce", "fbl"):
        argv = ["train", "--loss", loss, "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / loss)]
        assert main(argv) == 0
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 5 and "<table" in html
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_report_out_that_is_or_lies_under_a_file_is_one_line(tmp_path, capsys, where):
    (tmp_path / "notes").write_text("mine")
    out = tmp_path / "notes" if where == "a file" else tmp_path / "notes" / "report"
    err = _refused(["report", str(tmp_path), "--out", str(out)], capsys)
    expected = {
        "a file": f"fbl: error: cannot use {out} as the report folder: it is an existing file, not a folder\n",
        "under a file": (
            f"fbl: error: cannot create the report folder {out}: {tmp_path / 'notes'} is a file, not a folder\n"
        ),
    }[where]
    assert err == expected
    assert (tmp_path / "notes").read_text() == "mine"


def test_report_out_in_a_read_only_folder_is_one_line(tmp_path, capsys):
    with read_only_folder(tmp_path / "ro") as folder:
        err = _refused(["report", str(tmp_path), "--out", str(folder / "report")], capsys)
    assert err.startswith(f"fbl: error: cannot create the report folder {folder / 'report'}: {folder} is ")
