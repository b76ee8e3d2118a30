"""Atomic file and folder writes: a crash leaves the old version or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import StorageError

_umask_lock = threading.Lock()
# What make_temp_file names a temp file: "." + target name + "." + mkstemp's 8 random characters + suffix.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|part)$")
# errnos that mean "the disk or the file system refuses", not a bug: reported as one line naming the file.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def storage_error(path: str | os.PathLike, exc: OSError, doing: str | None = "write") -> StorageError | OSError:
    """A :class:`StorageError` naming ``path`` (and what failed: ``cannot write``) for a full disk, quota,
    read-only or permission failure; other OSErrors are returned unchanged (they are bugs, not the disk)."""
    if exc.errno not in _STORAGE_ERRNOS:
        return exc
    hint = "; free some space and run again (--resume continues a run)" if exc.errno in (
        errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    reason = exc.strerror or str(exc)
    return StorageError(f"{path}: cannot {doing} ({reason}){hint}" if doing else f"{path}: {reason}{hint}")


def current_umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no read-only call)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_temp_file(folder: str | os.PathLike, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` with the mode a plain ``open`` would give (0666 less the umask), not 0600.

    A file that audiorep writes through a temp file and a rename must look like any other file the
    user creates: readable by the group when their umask says so.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, tmp


def make_temp_dir(folder: str | os.PathLike, prefix: str) -> Path:
    """``tempfile.mkdtemp`` with the mode ``mkdir`` would give (0777 less the umask), not 0700."""
    path = Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an ``os.replace``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = make_temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)  # a full disk must not also keep the half-written copy
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise storage_error(path, exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it becomes ``target`` in one rename.

    ``target`` must not exist or be an empty folder: this never deletes what a folder holds (a
    ``FileExistsError`` instead). On an exception the staging folder is removed and ``target`` is left
    as it was.
    """
    target = Path(target).absolute()  # "." has no name to put a staging folder beside
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = make_temp_dir(target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise storage_error(target, exc) from exc
    try:
        yield staging
        try:
            os.rename(staging, target)  # replaces an empty folder, fails on a non-empty one
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(exc.errno, f"{target} appeared meanwhile and is not empty", str(target)) from exc
            raise storage_error(target, exc) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files that killed writes left in ``folder`` (not below it); returns what went.

    Only names made by :func:`make_temp_file` (``.NAME.XXXXXXXX.tmp`` / ``.part``) are touched. Call it
    only while holding the lock that makes this process the folder's one writer (a run folder's lock),
    or another process's write in progress would lose its temp file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if _TEMP_NAME.match(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def pid_temp_prefix(target: str | os.PathLike) -> str:
    """The temp-name prefix for a long write to ``target`` whose leftovers a later run may remove:
    ``.NAME.PID.`` (:func:`remove_dead_temps` deletes those whose process is gone)."""
    return f".{Path(target).name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to judge
    except OverflowError:
        return False
    return True


def remove_dead_temps(target: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.PID.XXXXXXXX.part`` files beside ``target`` whose writing process no longer runs.

    Only the names :func:`pid_temp_prefix` makes for this very target are considered, and a file whose
    pid is alive (a write in progress, or an unrelated process that reused the pid) stays.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.part$")
    folder = target.parent
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and entry.is_file() and not entry.is_symlink() \
                and not _pid_alive(int(m.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
