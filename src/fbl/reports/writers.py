"""Writing a report's content as ``report.md`` and as a self-contained ``report.html``.

The Markdown file refers to the PNGs beside it by relative path; the HTML file embeds them as
base64 ``data:`` URIs and loads nothing else, so it opens offline and can be mailed on its own.
Both are written whole or not at all (:func:`fbl.atomic_files.write_atomic`): a full disk keeps the
previous report and is one :class:`~fbl.errors.ConfigError` line.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from fbl.atomic_files import write_atomic


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class FigureFile:
    title: str
    path: Path
    caption: str = ""


@dataclass
class ReportContent:
    """What a report holds, independent of the format it is written in."""

    title: str
    intro: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def write_markdown(content: ReportContent, path: Path) -> Path:
    """``content`` as Markdown at ``path``; figures are linked relative to ``path``'s folder."""
    parts = [f"# {content.title}", *content.intro]
    for table in content.tables:
        parts.append(f"## {table.title}")
        if table.caption:
            parts.append(table.caption)
        parts.append(markdown_table(table))
    for figure in content.figures:
        relative = Path(os.path.relpath(figure.path, path.parent)).as_posix()
        parts.append(f"## {figure.title}")
        if figure.caption:
            parts.append(figure.caption)
        parts.append(f"![{figure.title}]({relative})")
    if content.notes:
        parts.append("## Notes")
        parts.append("\n".join(f"- {note}" for note in content.notes))
    write_atomic(path, "\n\n".join(parts) + "\n")
    return path


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; }
.caption, .notes { color: #555; }
"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_html(content: ReportContent, path: Path) -> Path:
    """``content`` as one HTML file at ``path`` with every figure embedded; no external resources."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(content.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(content.title)}</h1>",
        *(f"<p>{esc(line)}</p>" for line in content.intro),
    ]
    for table in content.tables:
        parts.append(f"<h2>{esc(table.title)}</h2>")
        if table.caption:
            parts.append(f'<p class="caption">{esc(table.caption)}</p>')
        parts.append(html_table(table))
    for figure in content.figures:
        parts.append(f"<h2>{esc(figure.title)}</h2>")
        if figure.caption:
            parts.append(f'<p class="caption">{esc(figure.caption)}</p>')
        parts.append(f'<img src="{png_data_uri(figure.path)}" alt="{esc(figure.title)}">')
    if content.notes:
        parts.append('<h2>Notes</h2><ul class="notes">')
        parts.extend(f"<li>{esc(note)}</li>" for note in content.notes)
        parts.append("</ul>")
    parts.append("</body></html>")
    write_atomic(path, "\n".join(parts) + "\n")
    return path
