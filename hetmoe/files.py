"""Writing artifacts: atomically, with the file modes ``open()`` would give, and a full disk said in one line.

Why modes: atomic writes go through ``tempfile.mkstemp`` / ``mkdtemp`` (0600 / 0700) or libraries that create private
files (safetensors), so a store or model built by one user would be unreadable by a service account although the
builder's umask says it should be. Every artifact is given the umask-derived mode just before its rename.

Why :func:`disk_errors`: a full disk surfaces as an ``OSError`` from Python, Zarr or safetensors, and as a
``ComputeError`` from polars; each write goes to a temporary name first, so nothing half-written is left under a
final name, and the user gets one line saying that the disk is full and that rerunning resumes.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hetmoe.errors import HetmoeError

_FALLBACK: int | None = None
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")  # how libraries without errno (polars) say it


def current_umask() -> int:
    """The process umask, read from /proc (no window in which another thread sees a changed umask); elsewhere read
    once by setting and restoring it."""
    global _FALLBACK
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    if _FALLBACK is None:
        _FALLBACK = os.umask(0o022)
        os.umask(_FALLBACK)
    return _FALLBACK


def file_mode() -> int:
    """Mode of a regular file created by ``open()`` under the current umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a folder created by ``mkdir()`` under the current umask."""
    return 0o777 & ~current_umask()


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give ``tmp`` the umask-derived file mode, then rename it onto ``path`` (atomic on one filesystem)."""
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a unique temporary file in the same folder, then rename: readers see the old or the new file, never
    half, and two writers never share a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_errors(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            publish(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json_atomic(path: str | Path, payload: Any, indent: int = 1, sort_keys: bool = True) -> None:
    """:func:`write_text_atomic` of ``payload`` as JSON (stores: compact and sorted; models and reports pass their
    own layout so existing files keep theirs)."""
    write_text_atomic(path, json.dumps(payload, indent=indent, sort_keys=sort_keys))


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or the error it wraps) is a full disk or an exceeded quota."""
    while err is not None:
        if (isinstance(err, OSError) and err.errno in DISK_FULL) or any(t in str(err) for t in DISK_FULL_TEXT):
            return True
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def disk_full_error(err: BaseException, path: str | Path) -> HetmoeError:
    """The one line for a full disk while writing ``path``."""
    return HetmoeError(f"{path}: no space left on device; free some space, then run the same command again (finished "
                       "work is kept, nothing half-written is)")


@contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Turn a full disk inside the block into one line naming ``path`` (other errors pass unchanged)."""
    try:
        yield
    except HetmoeError:
        raise
    except Exception as err:
        if is_disk_full(err):
            raise disk_full_error(err, path) from err
        raise
