"""Whose folder is this: the one rule every audiorep writer follows before it replaces or deletes a file.

audiorep keeps a marker file (:data:`MARKER`) in every folder it writes into, listing the names it wrote
there. The rule:

- a name the marker lists is audiorep's: it may be replaced (a run folder, ``--overwrite``) and deleted;
- any other existing name is the user's: never replaced, never deleted, with or without ``--overwrite``;
- new names may be written anywhere (they are recorded in the marker first, so a write cut short is
  still audiorep's to replace on the next run).

A folder without the marker (a transformers model, a project folder given as ``--out .``) is therefore
written into only under new names and never cleaned. Subfolders are names too: ``final`` listed in a run
folder's marker is audiorep's, and what it holds is governed by ``final``'s own marker.

Writers check before any work (:func:`check_writable`, :func:`check_output_dir`), record what they are
about to write (:func:`claim`), and delete only through :func:`remove_owned`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, StorageError
from .fileio import atomic_write_text, storage_error

MARKER = ".audiorep-files.json"
_KIND = "audiorep-owned-files"  # the marker's "kind": a file of this name but another kind is not ours


def _label(flag: str, folder: Path) -> str:
    return f"{flag} {folder}" if flag else str(folder)


def owned_names(folder: str | os.PathLike) -> set[str]:
    """The names audiorep recorded as written in ``folder`` (empty when it has no readable marker)."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()  # no marker, or one we cannot read: then nothing in the folder counts as ours
    if not isinstance(data, dict) or data.get("kind") != _KIND or not isinstance(data.get("files"), list):
        return set()
    return {n for n in data["files"] if isinstance(n, str)}


def is_owned(folder: str | os.PathLike, name: str) -> bool:
    """Whether ``folder/name`` is a file (or subfolder) that audiorep wrote."""
    return name in owned_names(folder)


def check_output_dir(folder: str | os.PathLike, flag: str = "--out") -> None:
    """ConfigError (one line, before any work) unless ``folder`` can be a folder audiorep writes into.

    Refused: a path whose existing part is a file (``file/sub``), a name longer than the file system
    allows, and a folder that cannot be created or written.
    """
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.is_dir():
        what = "a broken symbolic link" if not existing.exists() else "not a folder"
        where = "exists and is" if existing == folder else f"{existing} is"
        raise ConfigError(f"{_label(flag, folder)}: {where} {what}")
    base = existing if existing is not None else Path(".")
    try:
        name_max = os.pathconf(base, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in folder.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"{_label(flag, folder)}: the name {part[:40]}... is {len(os.fsencode(part))} bytes; "
                              f"this file system allows {name_max}")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{_label(flag, folder)}: cannot write in {existing} (permission denied)")


def check_writable(folder: str | os.PathLike, names: Iterable[str], *, replace: bool,
                   flag: str = "--out", dirs: Iterable[str] = ()) -> None:
    """ConfigError unless every name in ``names`` (files) and ``dirs`` (subfolders) may be written in ``folder``.

    A name that does not exist is fine, and so is an existing subfolder. An existing file must be listed in the folder's marker (else it is
    the user's and is refused, ``--overwrite`` or not) and ``replace`` must be set (else the message says
    to pass ``--overwrite``). A file where a subfolder goes (or the reverse) is refused too.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"{_label(flag, folder)}: exists and is not a folder")
    owned = owned_names(folder)
    for name, want_dir in [(n, False) for n in names] + [(d, True) for d in dirs]:
        path = folder / name
        if not (path.exists() or path.is_symlink()):
            continue
        if want_dir and not path.is_dir():
            raise ConfigError(f"{_label(flag, folder)}: {path} is a file where audiorep writes a folder; move it away")
        if not want_dir and path.is_dir():
            raise ConfigError(f"{_label(flag, folder)}: {path} is a folder where audiorep writes a file; move it away")
        if want_dir:
            continue  # an existing folder is written into under new names; its own marker rules inside it
        if name not in owned:
            raise ConfigError(f"{_label(flag, folder)}: {path} exists and audiorep did not write it (not listed in "
                              f"{MARKER}); it is never replaced, even with --overwrite: move it or choose "
                              f"another {flag}")
        if not replace:
            raise ConfigError(f"{_label(flag, folder)}: {path} already exists (audiorep wrote it); pass --overwrite "
                              f"to replace it, or choose another {flag}")


def claim(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Record ``names`` in ``folder``'s marker (creating the folder and the marker as needed), before
    writing them: a write cut short leaves a name audiorep may replace on the next run."""
    folder = Path(folder)
    names = set(names)
    owned = owned_names(folder)
    if names <= owned and (folder / MARKER).is_file():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(folder, exc, "create") from exc
    _write_marker(folder, owned | names)


def claim_new(folder: str | os.PathLike, names: Iterable[str], *, replace: bool, flag: str = "--out",
              dirs: Iterable[str] = ()) -> None:
    """:func:`check_writable`, then :func:`claim`: what a writer calls once it knows every name it writes."""
    names, dirs = list(names), list(dirs)
    check_writable(folder, names, replace=replace, flag=flag, dirs=dirs)
    claim(folder, names + dirs)


def remove_owned(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Delete what audiorep wrote in ``folder``: ``names`` (or every listed name) that the marker lists.

    Listed subfolders are emptied of their own listed files (recursively) and removed when that leaves
    them empty; a user's file anywhere stays, and so does the folder holding it. Returns what went.
    """
    folder = Path(folder)
    owned = owned_names(folder)
    wanted = owned if names is None else owned & set(names)
    removed: list[Path] = []
    for name in sorted(wanted):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            removed += remove_owned(path)
            _remove_marker(path)
            try:
                path.rmdir()
            except OSError:
                continue  # user files inside: the folder stays, and stays listed
        elif path.exists() or path.is_symlink():
            path.unlink()
        removed.append(path)
        owned.discard(name)
    if (folder / MARKER).is_file():
        _write_marker(folder, owned)
    return removed


def _remove_marker(folder: Path) -> None:
    """Drop the marker of a subfolder that holds nothing else, so the folder itself can go."""
    if not any(p.name != MARKER for p in folder.iterdir()):
        (folder / MARKER).unlink(missing_ok=True)


def _write_marker(folder: Path, names: set[str]) -> None:
    text = json.dumps({"kind": _KIND, "note": "files audiorep wrote here; only these may be replaced or "
                                              "deleted by audiorep", "files": sorted(names)}, indent=1) + "\n"
    try:
        atomic_write_text(folder / MARKER, text)
    except StorageError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{folder}: path too long for this file system") from exc
        raise


def copy_owned(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file into place as audiorep's own (recorded in the destination folder's marker first)."""
    dst = Path(dst)
    claim(dst.parent, [dst.name])
    shutil.copyfile(src, dst)
