"""The library's error types: every bad input ends in one of these, with a message naming what is wrong.

The command line prints an :class:`AudiorepError` as one line and exits with status 2, so the message is
the whole user interface of a failure: it names the file, folder or argument and says what is wrong.
"""

from __future__ import annotations

import re

# What torch's DataLoader makes of an exception raised in a worker process: the worker's whole traceback
# inside the message of a new exception of the same type (torch.utils.data._utils.ExceptionWrapper).
_WORKER_WRAPPER = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def strip_worker_traceback(message: str) -> str:
    """The original message of an exception that a DataLoader re-raised from a worker process.

    A bad file read in a worker would otherwise reach the user as 20-40 lines of the worker's traceback;
    with ``num_workers=0`` the same file gives one line. Other messages are returned unchanged.
    """
    m = _WORKER_WRAPPER.match(message)
    if m is None:
        return message
    # The traceback's last entry line reads "<module.>Name: message"; chained causes come before it.
    last = None
    for last in re.finditer(rf"^(?:[\w.]+\.)?{re.escape(m.group(1))}: ", message, re.M):
        pass
    return message[last.end():].strip() if last is not None else message


class AudiorepError(Exception):
    """Base class of audiorep's own errors."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (strip_worker_traceback(args[0]),)
        super().__init__(*args)


class AudioError(AudiorepError, ValueError):
    """Audio that cannot be used: unreadable, empty, corrupt, non-finite, wrong shape or wrong rate."""


class ConfigError(AudiorepError, ValueError):
    """A configuration (file, dict or override) that does not describe a valid model or run."""


class CheckpointError(AudiorepError, ValueError):
    """A checkpoint or saved model that cannot be loaded: truncated, foreign, unsafe or of another architecture."""


class WeightsUnavailableError(AudiorepError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable (offline machine, unknown URL)."""


class DownloadError(WeightsUnavailableError, CheckpointError):
    """A download that did not deliver the whole, expected file: cut short, an HTML page, a wrong checksum.

    Blames the download, not the checkpoint; nothing of it is kept in the cache.
    """


class StorageError(AudiorepError, OSError):
    """A file or folder that cannot be written: a full disk, a read-only file system, no permission."""


class PublishError(AudiorepError, RuntimeError):
    """An upload to the Hugging Face hub that did not happen: no token, no permission, no network."""


class BusyError(AudiorepError, RuntimeError):
    """A run folder (or cache entry) that another audiorep process is using right now."""
