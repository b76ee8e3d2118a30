"""Exclusive locks between audiorep processes: one run per run folder, one writer per cache entry.

A lock is an ``flock`` on a small file: the kernel drops it when the holder exits, however it exits
(``kill -9`` included), so a crashed run never leaves a folder locked. The lock file itself stays
(deleting it would let two processes lock two different files of the same name) and holds the
holder's pid, which the refusal names.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from .errors import BusyError, StorageError

RUN_LOCK_NAME = ".audiorep.lock"


class FileLock:
    """An exclusive lock on ``path``, held from :meth:`acquire` (or ``with``) until :meth:`release`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = 0.0) -> bool:
        """Take the lock; False when another process holds it past ``timeout`` seconds.

        ``timeout=0`` tries once, ``None`` waits as long as it takes.
        """
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides the mode
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot create the lock file ({exc.strerror})") from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        # Written after locking, so a process refused a moment later reads the current holder.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the file is what releases an flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """The pid written by the current (or last) holder, or "unknown"."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return "unknown"
        return text if text.isdigit() else "unknown"

    def __enter__(self) -> "FileLock":
        self.acquire(timeout=None)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_run_folder(folder: str | os.PathLike) -> FileLock:
    """Lock a run folder for this process's whole run; :class:`BusyError` at once if another run holds it.

    Two runs writing one folder interleave their metrics, configs and checkpoints: the second is refused
    before it writes anything. Creates the folder if needed. Release with ``.release()`` or ``with``.
    """
    folder = Path(folder)
    lock = FileLock(folder / RUN_LOCK_NAME)
    if not lock.acquire(timeout=0):
        raise BusyError(f"{folder}: another audiorep run (pid {lock.holder()}) is using this folder; "
                        "wait for it to finish or choose another --out")
    return lock
