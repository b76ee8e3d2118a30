"""Plain URL downloads for checkpoints hosted outside the hub: whole or nothing, bounded in time, checked.

The transfer lands in a temporary file beside the destination and is renamed into place only after its size,
content type and sha256 pass; a watchdog bounds the whole transfer (``AUDIOREP_DOWNLOAD_TIMEOUT``), not just
one read, so a server that trickles bytes cannot hold a load for ever.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import math
import os
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DownloadError, StorageError
from ..fileio import make_temp_file, storage_error
from ..locking import FileLock


DEFAULT_DOWNLOAD_TIMEOUT_S = 1800.0
STALL_S = 30.0
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def download_timeout() -> float:
    """Seconds a whole download may take: ``$AUDIOREP_DOWNLOAD_TIMEOUT`` or 1800."""
    raw = os.environ.get("AUDIOREP_DOWNLOAD_TIMEOUT")
    if raw is None or not raw.strip():
        return DEFAULT_DOWNLOAD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"AUDIOREP_DOWNLOAD_TIMEOUT={raw!r}: expected a positive number of seconds")
    return value


class _Watchdog:
    """Shuts every socket a download opened when its deadline passes.

    A socket timeout bounds one read, not a download: a server sending a byte a second keeps a
    transfer alive for ever. Shutting the socket down from a timer wakes the blocked read wherever it
    is (connecting, reading headers or the body).
    """

    def __init__(self, seconds: float) -> None:
        self.sockets: list[socket.socket] = []
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def opener(self, redirects: list[Any]) -> urllib.request.OpenerDirector:
        """An opener whose connections register their sockets here and whose redirects are recorded."""
        watchdog = self

        def watched(base: type) -> type:
            class Connection(base):  # type: ignore[misc, valid-type]
                def connect(self) -> None:
                    super().connect()
                    watchdog.sockets.append(self.sock)
                    if watchdog.fired:
                        self.sock.shutdown(socket.SHUT_RDWR)
            return Connection

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):  # noqa: ANN001 - urllib's signature
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):  # noqa: ANN001
                return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

        class Redirects(urllib.request.HTTPRedirectHandler):
            # The Hugging Face hub publishes an LFS file's sha256 (X-Linked-Etag) on the redirect to its
            # CDN, not on the CDN's own response: keep the headers of every hop.
            def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
                redirects.append(headers)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        return urllib.request.build_opener(HTTP, HTTPS, Redirects)


def published_sha256(headers: Any) -> str | None:
    """The sha256 a host publishes for a file (the hub's ``X-Linked-Etag``), if these headers carry one."""
    value = (headers.get("X-Linked-Etag") or "").strip()
    value = value.removeprefix("W/").strip('"').lower()
    return value if SHA256_HEX.match(value) else None


def _looks_like_html(head: bytes, content_type: str) -> bool:
    """An error, login or quota page where a checkpoint (zip or pickle: never "<") was expected."""
    start = head.lstrip()[:15].lower()
    if not start.startswith(b"<"):
        return False
    return "text/html" in content_type.lower() or start.startswith((b"<!doctype html", b"<html", b"<head"))


def download(url: str, dest: Path, sha256: str | None = None, timeout: float | None = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest``, whole or not at all; returns ``dest``.

    - One writer at a time: the transfer runs under a lock beside ``dest``, into a temp file of this
      process that is renamed onto ``dest`` once complete and verified (parallel callers never see or
      delete each other's files). Temp files of killed downloads are removed under that lock.
    - ``timeout`` (default :func:`download_timeout`) bounds the whole transfer, not one read.
    - Checked: the length against Content-Length, the sha256 against ``sha256`` or, where none is given,
      the one the host publishes (the Hugging Face hub does for its large files), and that the server did
      not answer with an HTML page. A failed check raises :class:`DownloadError` naming the URL.
    Network failures raise the usual ``URLError``/``TimeoutError``/``ConnectionError``.
    """
    from tqdm.auto import tqdm

    timeout = download_timeout() if timeout is None else timeout
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(dest.parent, exc) from exc
    with FileLock(dest.parent / f".{dest.name}.lock"):
        for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
            stale.unlink(missing_ok=True)  # a download killed mid-way; we hold the lock, so it is no one's
        try:
            fd, tmp = make_temp_file(dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as exc:
            raise storage_error(dest, exc) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                digest, published, content_type = _transfer(url, out, dest, timeout, tqdm, progress)
            with open(tmp, "rb") as f:
                if _looks_like_html(f.read(64), content_type):
                    raise DownloadError(f"{url}: the server sent an HTML page (an error, login or quota page?), "
                                        "not the file; nothing was kept")
            expected = (sha256 or published or "").lower()
            if expected and digest != expected:
                raise DownloadError(f"{url}: the download's sha256 {digest} does not match the "
                                    f"{'expected' if sha256 else 'published'} {expected}; nothing was kept")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dest


def _transfer(url: str, out: Any, dest: Path, timeout: float, tqdm: Any, progress: bool
              ) -> tuple[str, str | None, str]:
    """Stream ``url`` into ``out`` within ``timeout`` s; (sha256 hex, host-published sha256 or None, Content-Type)."""
    digest = hashlib.sha256()
    redirects: list[Any] = []
    received, total = 0, None
    too_long = f"the download took longer than {timeout:g} s (AUDIOREP_DOWNLOAD_TIMEOUT sets the limit)"
    with _Watchdog(timeout) as dog:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "audiorep"})
            with dog.opener(redirects).open(req, timeout=min(STALL_S, timeout)) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                content_type = resp.headers.get("Content-Type", "")
                published = next(filter(None, map(published_sha256, [*redirects, resp.headers])), None)
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    # read1: return what one recv brings, so the deadline is checked between small reads
                    while chunk := resp.read1(1 << 20):
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            raise storage_error(dest, exc) from exc
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                        if dog.fired:
                            break
        except OSError as exc:
            if dog.fired and not isinstance(exc, StorageError):
                raise TimeoutError(too_long) from None
            raise
        if dog.fired and (total is None or received < total):  # the shut socket read as an early end
            raise TimeoutError(too_long)
    if total is not None and received != total:
        raise DownloadError(f"{url}: the download stopped after {received} of {total} bytes "
                            "(connection cut?); nothing was kept")
    return digest.hexdigest(), published, content_type
