import base64
import errno
import os

import pytest

from fbl.errors import ConfigError
from fbl.reports.writers import FigureFile, ReportContent, Table, markdown_table, write_html, write_markdown

from ._png import PNG_SIGNATURE

# A 1x1 PNG, written out byte by byte so the test does not depend on the figure code.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _content(tmp_path):
    figure = tmp_path / "figs" / "curve.png"
    figure.parent.mkdir()
    figure.write_bytes(TINY_PNG)
    table = Table("Last epoch", ["Method", "Top-1"], [["fbl λ=60", "74.17 ± 1.26"], ["a|b <x>", "–"]], "caption")
    return ReportContent("title", ["intro"], [table], [FigureFile("Curve", figure, "a curve")], ["a note"]), figure


def test_tiny_png_is_a_png():
    assert TINY_PNG[:8] == PNG_SIGNATURE


def test_markdown_table_escapes_pipes():
    table = Table("t", ["A", "B"], [["x|y", "1"]])
    assert markdown_table(table) == "| A | B |\n|---|---|\n| x\\|y | 1 |"


def test_markdown_refers_to_figures_by_relative_path(tmp_path):
    content, _ = _content(tmp_path)
    text = write_markdown(content, tmp_path / "report.md").read_text(encoding="utf-8")
    assert "![Curve](figs/curve.png)" in text
    assert "| fbl λ=60 | 74.17 ± 1.26 |" in text
    assert "- a note" in text


def test_html_embeds_figures_and_loads_nothing_external(tmp_path):
    content, figure = _content(tmp_path)
    text = write_html(content, tmp_path / "report.html").read_text(encoding="utf-8")
    expected_uri = "data:image/png;base64," + base64.b64encode(figure.read_bytes()).decode("ascii")
    assert f'<img src="{expected_uri}"' in text
    assert "<td>fbl λ=60</td><td>74.17 ± 1.26</td>" in text
    assert "a|b &lt;x&gt;" in text  # escaped
    assert "<li>a note</li>" in text
    for external in ("http://", "https://", "<script", "<link"):
        assert external not in text


@pytest.mark.parametrize("write", [write_markdown, write_html])
def test_report_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch, write):
    content, _ = _content(tmp_path)
    path = tmp_path / "report.out"
    path.write_text("previous report")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ConfigError) as err:
        write(content, path)
    monkeypatch.undo()
    assert str(err.value) == f"could not write {path}: No space left on device; the previous file is kept"
    assert path.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
