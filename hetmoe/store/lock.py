"""One ``embed`` at a time per expert store and shard: an ``fcntl.flock`` on a lock file in the expert's folder.

Why: two processes embedding the same store each encoded every missing chunk (the markers only say what is done,
not what is in progress), doubling hours of work. The second process now waits for the first, logging who holds
the lock, and then resumes from the first one's markers (usually: nothing left to do); with ``wait=False`` it
fails at once naming the holder. Shards ``i/N`` lock separately, so N workers still fill one store together.
The kernel drops a flock when its process dies (even by ``kill -9``), so a crash never leaves a stale lock; the
holder's pid, host and start time in the file are only for messages.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)

LOCK_PREFIX = ".embed-"
LOCK_SUFFIX = ".lock"


def lock_path(folder: Path, shard: tuple[int, int]) -> Path:
    """``STORE/<expert>/.embed-<i>-of-<N>.lock``."""
    return folder / f"{LOCK_PREFIX}{shard[0]}-of-{shard[1]}{LOCK_SUFFIX}"


def is_lock(path: Path) -> bool:
    return path.name.startswith(LOCK_PREFIX) and path.name.endswith(LOCK_SUFFIX)


def clear_folder(folder: Path) -> None:
    """Delete everything in an expert's folder but its lock files (``--overwrite``): deleting a held lock file would
    let a newcomer lock a fresh file and run beside the holder."""
    for entry in folder.iterdir():
        if is_lock(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def holder(path: Path) -> str:
    """'pid 123 on host since 12:00:01' from the lock file (best effort: it may be empty for an instant)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (pid not recorded yet)"


def _missing_parents(folder: Path) -> list[Path]:
    """The folders that ``mkdir(parents=True)`` would create, deepest first (removed again if left empty)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _open_locked(path: Path, shard: tuple[int, int], wait: bool) -> int:
    """An fd holding the exclusive flock on the file that is at ``path`` now (retried if it was replaced)."""
    waited = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        except FileNotFoundError:  # a releasing holder removed the empty folder in between
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(path)
            if not wait:
                os.close(fd)
                raise HetmoeError(
                    f"{path.parent}: shard {shard[0]}/{shard[1]} is being embedded by {who}; wait for it "
                    "to finish (run without --no-wait to wait and then resume), or stop that process"
                )
            if not waited:
                log.warning(
                    "%s: waiting for %s, which is embedding shard %d/%d of this store; the chunks it writes "
                    "are skipped afterwards",
                    path.parent,
                    who,
                    *shard,
                )
                waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file on release: lock the one at the path now


@contextmanager
def embed_lock(folder: Path, shard: tuple[int, int] = (0, 1), wait: bool = True) -> Iterator[Path]:
    """Hold the lock of ``folder``'s shard for the block; on exit remove the lock file, and folders this call created
    that stayed empty (a refused embed leaves nothing behind)."""
    path = lock_path(folder, shard)
    created = _missing_parents(folder)
    fd = _open_locked(path, shard, wait)
    try:
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200],
        }
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()  # while still locked: a waiter notices and locks a fresh file
        except FileNotFoundError:
            pass
        os.close(fd)
        for empty in created:
            try:
                empty.rmdir()
            except OSError:
                break
