"""Every file fbl writes is whole or absent, and a failure to write is one line."""

import errno
import os
import stat

import pytest

from fbl.atomic_files import append_line, atomic_output, check_writable_folder, write_atomic
from fbl.errors import ConfigError

from ._disks import TINY_DISK_BYTES, read_only_folder, tiny_disk

NO_SPACE = "No space left on device"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


class FillsUp:
    """A file handle on a disk that fills up half-way through the first write."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        no_space()

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


def test_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "summary.json"
    assert write_atomic(path, '{"a": 1}') == path
    write_atomic(path, "é\n")
    assert path.read_bytes() == b"\xc3\xa9\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert leftovers(path.parent) == []


def test_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_mode(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "config.yaml"
    write_atomic(path, "a: 1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0o600
    path.chmod(0o640)
    write_atomic(path, "a: 2\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_torn_write_leaves_the_old_file_intact(tmp_path, monkeypatch, failing):
    path = tmp_path / "summary.json"
    path.write_text('{"old": true}')
    if failing == "write":
        real = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FillsUp(real(*args, **kwargs)))
    else:
        monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(ConfigError) as err:
        write_atomic(path, '{"new": true, "padding": "' + "x" * 10_000 + '"}')
    monkeypatch.undo()
    assert one_line(err) == f"could not write {path}: {NO_SPACE}; the previous file is kept"
    assert path.read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []


def test_failed_first_write_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "chosen.json"
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ConfigError) as err:
        write_atomic(path, "{}")
    monkeypatch.undo()
    assert one_line(err) == f"could not write {path}: {NO_SPACE}; no file was written"
    assert not path.exists() and leftovers(tmp_path) == []


def test_an_error_that_is_not_about_the_disk_propagates_and_keeps_the_file(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_output(path) as handle:
        handle.write(b"new")
        1 / 0  # noqa: B018  (a bug in the caller's writing code)
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_full_disk_for_real_keeps_the_old_file(tmp_path):
    with tiny_disk(tmp_path / "disk") as disk:
        path = disk / "summary.json"
        write_atomic(path, "old")
        with pytest.raises(ConfigError) as err:
            write_atomic(path, "x" * (2 * TINY_DISK_BYTES))
        assert one_line(err) == f"could not write {path}: {NO_SPACE}; the previous file is kept"
        assert path.read_text() == "old" and leftovers(disk) == []


def test_append_that_fails_part_way_is_cut_back(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"epoch": 0}')
    real = os.write

    def half_then_full(fd, data):
        real(fd, bytes(data[: len(data) // 2]))
        no_space()

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(ConfigError) as err:
        append_line(path, '{"epoch": 1, "top1": 50.0}')
    monkeypatch.undo()
    assert one_line(err) == f"could not append to {path}: {NO_SPACE}; the file keeps its complete lines"
    assert path.read_text() == '{"epoch": 0}\n'
    append_line(path, '{"epoch": 1}')
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'


def test_folder_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as err:
        check_writable_folder(tmp_path / "notes.txt", "run folder")
    notes = tmp_path / "notes.txt"
    assert one_line(err) == f"cannot use {notes} as the run folder: it is an existing file, not a folder"
    with pytest.raises(ConfigError) as err:
        check_writable_folder(tmp_path / "notes.txt" / "a" / "run", "run folder")
    assert one_line(err) == (
        f"cannot create the run folder {tmp_path / 'notes.txt' / 'a' / 'run'}: {tmp_path / 'notes.txt'} is a file, "
        "not a folder"
    )
    check_writable_folder(tmp_path / "new" / "run")  # creatable: fine, and nothing is created
    assert not (tmp_path / "new").exists()


def test_read_only_folder_is_refused_before_anything_is_written(tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(ConfigError) as err:
            check_writable_folder(folder / "runs" / "a", "run folder")
        message = one_line(err)
        assert message.startswith(f"cannot create the run folder {folder / 'runs' / 'a'}: {folder} is ")
        assert message.endswith(("on a read-only file system", "not writable (permission denied)"))
        with pytest.raises(ConfigError) as err:
            check_writable_folder(folder, "run folder")
        assert one_line(err).startswith(f"cannot write in the run folder {folder}: {folder} is ")
        with pytest.raises(ConfigError) as err:
            write_atomic(folder / "summary.json", "{}")
        assert one_line(err).startswith(f"could not write {folder / 'summary.json'}: ")
        assert one_line(err).endswith("; no file was written")
