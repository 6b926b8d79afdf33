"""The report folder (``fbl report --out``, ``fbl compare``'s ``OUT/report``): fbl's files only, replaced whole.

| file | content |
| --- | --- |
| ``report.md``, ``report.html`` | the report (the HTML embeds every figure) |
| ``<figure>.png`` | one PNG per figure drawn |
| ``.fbl-report`` | the list of the files above that fbl wrote (:class:`~fbl.manifest.Manifest`) |

A folder holding a ``report.md``, ``report.html`` or figure PNG that fbl did not write (a user's
own report) is refused in one line before anything is read or drawn; a folder written by an fbl
from before the marker is recognised by its ``report.md`` heading. Figures are drawn into a hidden
staging folder inside the report folder and moved into place (``os.replace``) only once every
figure is drawn, so a figure that fails to draw leaves the previous report's figures as they were.
A figure of fbl's that this report does not draw is removed, so no earlier figure looks current.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fbl.atomic_files import check_writable_folder, fsync_directory
from fbl.errors import ConfigError
from fbl.manifest import Manifest

REPORT_MARKER = ".fbl-report"
REPORT_FILES = ("report.md", "report.html")
#: How every report.md fbl has written begins: a folder from before the marker is recognised by it.
REPORT_HEADING = "# fbl report\n"


class ReportFolder:
    """The report folder at ``path``, whose figures are ``<stem>.png`` for each of ``figure_stems``."""

    def __init__(self, path: str | Path, figure_stems: Iterable[str]):
        self.path = Path(path)
        self.names = (*REPORT_FILES, *(f"{stem}.png" for stem in figure_stems))
        self._manifest = Manifest(self.path, REPORT_MARKER, "report folder")

    def check(self) -> None:
        """Raise a one-line ConfigError unless fbl may write its report here; writes nothing."""
        check_writable_folder(self.path, "report folder")
        owned = self._owned()
        foreign = [name for name in self.names if os.path.lexists(self.path / name) and name not in owned]
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise ConfigError(
                f"{self.path / foreign[0]}{more} was not written by fbl: a report in {self.path} would overwrite it; "
                "move it away or pick another --out"
            )

    def _owned(self) -> set[str]:
        if self._manifest.exists():
            return self._manifest.files()
        if _starts_with(self.path / "report.md", REPORT_HEADING):  # written by an fbl from before the marker
            return {name for name in self.names if (self.path / name).is_file()}
        return set()

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A hidden folder inside the report folder to draw figures into; removed afterwards, whatever happens."""
        self.check()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(dir=self.path, prefix=f"{REPORT_MARKER}-figures."))
        except OSError as exc:
            raise ConfigError(f"could not write in the report folder {self.path}: {exc.strerror or exc}") from exc
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, staged: list[Path]) -> list[Path]:
        """Move the figures drawn into the staging folder into place; remove fbl's figures not drawn this time.

        Returns the figures' paths in the report folder.
        """
        owned = self._owned()
        self._manifest.record(*self.names)  # listed before written, as in a run folder
        placed = []
        try:
            for figure in staged:
                os.replace(figure, self.path / figure.name)
                placed.append(self.path / figure.name)
            for name in self.names[len(REPORT_FILES) :]:
                if name in owned and self.path / name not in placed:
                    (self.path / name).unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"could not write the figures in {self.path}: {exc.strerror or exc}") from exc
        fsync_directory(self.path)
        return placed


def _starts_with(path: Path, text: str) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(text)).decode("utf-8", "replace") == text
    except OSError:
        return False
