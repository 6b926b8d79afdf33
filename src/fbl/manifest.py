"""The list of files fbl wrote in a folder, kept in a marker file in that folder.

A run folder's marker is ``.fbl-run`` (:mod:`fbl.engine.run_folder`), a report folder's
``.fbl-report`` (:mod:`fbl.reports.report`). The list is what lets ``--overwrite`` remove fbl's own
files and nothing else, and what tells a user's ``config.yaml`` or ``report.md`` from one fbl
wrote: a file is fbl's when the marker lists it. A name is listed
*before* its file is first written, so a kill between the two leaves a listed file that does not
exist (harmless), never an unlisted file of fbl's. The marker itself is written atomically.

Layout: ``{"written_by": "fbl", "kind": "run folder", "files": ["checkpoints/last.pt", ...]}``,
paths relative to the folder, with ``/`` separators. This module sits beside :mod:`fbl.atomic_files`
in the lowest layer, so the engine and the reports share it.
"""

from __future__ import annotations

import json
from pathlib import Path

from fbl.atomic_files import write_atomic
from fbl.errors import ConfigError

#: The marker of a run folder.
RUN_MARKER = ".fbl-run"


class Manifest:
    """The files fbl wrote in ``folder``, as listed in ``folder/marker``."""

    def __init__(self, folder: str | Path, marker: str = RUN_MARKER, kind: str = "run folder"):
        self.folder = Path(folder)
        self.path = self.folder / marker
        self.kind = kind
        self._files: set[str] | None = None  # read once, then kept in step with what is written

    def exists(self) -> bool:
        return self.path.is_file()

    def files(self) -> set[str]:
        """The listed files (relative paths); empty when there is no marker."""
        if self._files is None:
            self._files = self._read() if self.exists() else set()
        return set(self._files)

    def owns(self, relative: str) -> bool:
        return relative in self.files()

    def record(self, *relative: str) -> None:
        """List ``relative`` paths (before their files are written); the marker is rewritten only for new names."""
        files = self.files()
        if self.exists() and files.issuperset(relative):
            return
        files.update(relative)
        content = {"written_by": "fbl", "kind": self.kind, "files": sorted(files)}
        write_atomic(self.path, json.dumps(content, indent=1) + "\n")
        self._files = files

    def record_if_marked(self, *relative: str) -> None:
        """:meth:`record` in a folder that has its marker; nothing in one without (a user's own folder)."""
        if self.exists():
            self.record(*relative)

    def remove(self) -> None:
        """Forget the folder: remove the marker (once the files it lists are gone)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"could not remove {self.path}: {exc.strerror or exc}") from exc
        self._files = None

    def _read(self) -> set[str]:
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path} is damaged ({type(exc).__name__}); {self._advice()}") from None
        if not isinstance(content, dict) or content.get("written_by") != "fbl":
            raise ConfigError(f"{self.path} was not written by fbl; {self._advice()}")
        files = content.get("files")
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise ConfigError(f"{self.path} is damaged (no list of files); {self._advice()}")
        return set(files)

    def _advice(self) -> str:
        return f"fbl cannot tell its own files in {self.folder} from others: move them away or pick another folder"
