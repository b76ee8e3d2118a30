"""Offline means offline for every loading path: with AUDIOREP_OFFLINE=1 or HF_HUB_OFFLINE=1 no socket is
opened (the test makes every connection attempt fail and counts them); with no network and no switch, a
name that cannot resolve fails in seconds, in one line, after at most one attempt."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time

import pytest

import audiorep
from audiorep.errors import AudiorepError, WeightsUnavailableError
from audiorep.network import forget_reachability

pytest.importorskip("huggingface_hub")

# torchaudio: bundles need the [torchaudio] extra; without it their (one-line) error is about the extra
TORCHAUDIO = pytest.param("torchaudio:WAV2VEC2_BASE", marks=pytest.mark.skipif(
    importlib.util.find_spec("torchaudio") is None, reason="the [torchaudio] extra is not installed"))
SOURCES = ["hf:facebook/wav2vec2-base", TORCHAUDIO, "hf-hub:org/model", "tera-base", "mockingjay-base"]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every way a library opens a connection raises, and is counted."""
    attempts: list[str] = []

    def refuse(what):
        def refused(*args, **kwargs):
            attempts.append(f"{what}{args[1:2] if what == 'connect' else args[:1]}")
            raise OSError(101, "Network is unreachable (refused by the test)")
        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torchaudio's cache: empty
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    forget_reachability()
    yield attempts
    forget_reachability()


@pytest.mark.parametrize("switch", ["AUDIOREP_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("source", SOURCES)
def test_offline_switch_keeps_every_loading_path_off_the_network(monkeypatch, no_network, switch, source):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1" if switch == "AUDIOREP_OFFLINE" else "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if switch == "HF_HUB_OFFLINE" else "0")
    with pytest.raises(AudiorepError) as err:
        audiorep.load(source, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and f"{switch}=1" in msg, msg
    assert no_network == [], f"{source}: sockets opened offline: {no_network}"


@pytest.fixture
def switches_off(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize("source", ["aalbert-base", "hf:facebook/wav2vec2-base", "hf-hub:org/model", TORCHAUDIO])
def test_no_network_fails_in_seconds_with_one_line(no_network, switches_off, source):
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        audiorep.load(source, progress=False)
    took = time.monotonic() - t0
    msg = str(err.value)
    assert took < 5, f"{source}: {took:.1f} s"
    assert "\n" not in msg and "cannot be reached" in msg, msg
    assert len(no_network) <= 1, no_network  # one look, not a retry loop


# ------------------------------------------------------------------------------------------ the fetch lock


def _hold_fetch_lock(name):
    from audiorep.locking import FileLock
    from audiorep.weights.cache import cache_dir

    lock = FileLock(cache_dir() / "locks" / f"{name}.lock")
    assert lock.acquire(timeout=0)
    return lock


def test_fetch_lock_offline_fails_at_once_naming_the_holder(monkeypatch):
    import os

    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    lock = _hold_fetch_lock("tera-base")
    result: list[BaseException] = []

    def load():
        try:
            audiorep.load("tera-base", progress=False)
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    try:
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "offline, yet waiting for another process's fetch"
    finally:
        lock.release()
    assert isinstance(result[0], WeightsUnavailableError)
    msg = str(result[0])
    assert f"pid {os.getpid()}" in msg and "AUDIOREP_OFFLINE=1" in msg and "\n" not in msg


def test_fetch_lock_wait_is_said_and_bounded(monkeypatch, switches_off, capsys):
    import os

    from audiorep.weights import hub

    monkeypatch.setenv("AUDIOREP_DOWNLOAD_TIMEOUT", "0.3")
    monkeypatch.setattr(hub, "CONVERT_MARGIN_S", 0.2)
    lock = _hold_fetch_lock("tera-base")
    try:
        t0 = time.monotonic()
        with pytest.raises(WeightsUnavailableError, match=f"pid {os.getpid()}.* more than 0.5 s"):
            audiorep.load("tera-base", progress=False)
        assert time.monotonic() - t0 < 3
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert f"waiting for process {os.getpid()}" in err and "at most 0.5 s" in err
