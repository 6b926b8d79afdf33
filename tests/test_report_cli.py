"""fbl report on real (tiny) run folders: every figure a valid PNG, the html self-contained."""

import base64
import re

from fbl.cli import main


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
