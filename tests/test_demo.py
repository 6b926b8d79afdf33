"""`make demo`: CE and FBL on digits-lt with the full preset, compared on many/medium/few."""

import re

from fbl.demo import run_demo


def test_demo_reports_fbl_few_shot_next_to_ce(tmp_path):
    # Its wall-clock budget is measured by benchmarks/demo_time.py: tests never assert a time.
    table = run_demo(out=str(tmp_path))
    print(table)  # visible with -s: what the demo measured, whatever it is
    rows = {m.group(1): m.group(2).split() for m in re.finditer(r"^(CE|FBL)\s+(.*)$", table, re.M)}
    assert set(rows) == {"CE", "FBL"}
    for cells in rows.values():
        top1, many, medium, few, few_norm = (float(c) for c in cells)
        assert 0 <= few <= 100 and few_norm > 0
    assert (tmp_path / "fbl" / "summary.json").is_file() and (tmp_path / "ce" / "summary.json").is_file()


def test_demo_command_prints_the_table(tmp_path, capsys):
    from fbl.cli import main

    assert main(["demo", "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "few ||f||" in out and "\nCE " in out and "\nFBL " in out
