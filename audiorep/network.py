"""Whether audiorep may use the network (offline switches), and whether a host answers at all.

Every loading path asks here before it lets a library (huggingface_hub, transformers, torchaudio) near the
network. Offline, none of them is called in a mode that may connect. Online, a host that cannot even be
resolved or connected to is found out in one try of a few seconds: the hub libraries would otherwise retry
with back-off for half a minute before saying the same thing, and a name that did not resolve a second ago
will not resolve on the next try either.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Iterator
from urllib.parse import urlparse

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
REACH_TIMEOUT_S = 4.0  # one DNS lookup and one TCP connect; a reachable host answers far sooner
_REMEMBER_S = 60.0  # one answer serves the config, weights and preprocessor lookups of one load
_seen: dict[tuple[str, int], tuple[float, str | None]] = {}


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading


def offline_reason() -> str | None:
    """Why audiorep must not touch the network (``"AUDIOREP_OFFLINE=1"``, ``"HF_HUB_OFFLINE=1"``), or None."""
    if os.environ.get("AUDIOREP_OFFLINE") == "1":
        return "AUDIOREP_OFFLINE=1"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _is_true(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def hf_endpoint() -> str:
    """The Hugging Face hub's address now: ``$HF_ENDPOINT`` or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def _first_hop(url: str) -> tuple[str, int]:
    """The host and port a request to ``url`` connects to first: the proxy's where one is set."""
    scheme = urlparse(url).scheme or "https"
    proxy = (os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY")
             or os.environ.get("all_proxy") or os.environ.get("ALL_PROXY"))
    parsed = urlparse(proxy if proxy else url)
    default = 443 if parsed.scheme == "https" else 80
    return parsed.hostname or "", parsed.port or default


def unreachable_reason(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None when a TCP connection to ``url``'s host (or its proxy) opens within ``timeout`` s; else why not,
    in words (``"huggingface.co cannot be reached (no network? gaierror: ...)"``). Answers are remembered
    for a minute per host."""
    host, port = _first_hop(url)
    now = time.monotonic()
    if (host, port) in _seen and now - _seen[(host, port)][0] < _REMEMBER_S:
        return _seen[(host, port)][1]
    result: list[str | None] = []

    def attempt() -> None:  # in a thread: a DNS lookup has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    if result and result[0] is None:
        reason = None
    else:
        cause = result[0] if result else f"no answer within {timeout:g} s"
        reason = f"{host}:{port} cannot be reached (no network? {cause})"
    _seen[(host, port)] = (now, reason)
    return reason


@contextlib.contextmanager
def hub_library_offline(active: bool = True) -> Iterator[None]:
    """While active, huggingface_hub (and transformers through it) believe ``HF_HUB_OFFLINE`` is set.

    ``local_files_only`` alone is not enough: building a request's headers, even for a cache lookup, may fetch
    a registry from the hub, and the library reads its own offline switch once, at import.
    """
    if not active:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def forget_reachability() -> None:
    """Drop remembered answers (a test that changes the network)."""
    _seen.clear()
