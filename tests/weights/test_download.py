"""The one download path: whole or nothing, one writer, a deadline for the whole transfer, checked bytes.

Every server here is started by the test on 127.0.0.1 and answers a bounded number of requests.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time

import pytest
import torch

import audiorep
from audiorep.weights.s3prl import export_s3prl_checkpoint
from audiorep.errors import DownloadError, WeightsUnavailableError
from audiorep.weights.cache import cache_dir
from audiorep.weights.download import download
from audiorep.models import MockingjayConfig, MockingjayModel
from audiorep.registry import ModelSpec, register_model, unregister_model


def _tiny() -> MockingjayModel:
    return MockingjayModel(MockingjayConfig(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1)).eval()


class Server:
    """A local HTTP server whose GET answers are written by ``respond(handler)``; records the paths asked."""

    def __init__(self, respond):
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.hits.append(self.path)
                respond(self)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler, body: bytes, status: int = 200, headers: dict | None = None, length: int | None = None):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")


@pytest.fixture
def ckpt_bytes(tmp_path):
    m = _tiny()
    export_s3prl_checkpoint(m, tmp_path / "states-1.ckpt")
    return (tmp_path / "states-1.ckpt").read_bytes()


def _register(name, url, **kw):
    cfg = _tiny().config
    return register_model(ModelSpec(name, lambda: cfg, url=url, **kw), overwrite=True)


def _leftovers() -> list[str]:
    d = cache_dir() / "downloads"
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock")) if d.is_dir() else []


def test_parallel_first_loads_share_one_download(online, ckpt_bytes):
    def respond(h):
        time.sleep(0.3)  # keep the first download in flight while the others arrive
        send(h, ckpt_bytes)

    server = Server(respond)
    _register("rel-par", f"{server.url}/states-1.ckpt")
    results, errors = [], []

    def load():
        try:
            results.append(audiorep.load("rel-par", progress=False))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and len(results) == 3
        assert server.hits == ["/states-1.ckpt"]  # the waiting loads found the converted folder
        assert _leftovers() == []
    finally:
        unregister_model("rel-par")
        server.close()


def test_the_deadline_bounds_the_whole_download_not_one_read(online, monkeypatch):
    def respond(h):  # a byte every 0.2 s: every read succeeds, the download never ends
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(60):
            try:
                h.wfile.write(b"x")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    server = Server(respond)
    _register("rel-slow", f"{server.url}/slow")
    monkeypatch.setenv("AUDIOREP_DOWNLOAD_TIMEOUT", "1.5")
    try:
        t0 = time.monotonic()
        with pytest.raises(WeightsUnavailableError, match=r"longer than 1.5 s \(AUDIOREP_DOWNLOAD_TIMEOUT"):
            audiorep.load("rel-slow", progress=False)
        assert time.monotonic() - t0 < 6
        assert _leftovers() == []  # no .part file stays
    finally:
        unregister_model("rel-slow")
        server.close()


def test_a_killed_downloads_part_file_is_removed_by_the_next(online, ckpt_bytes):
    server = Server(lambda h: send(h, ckpt_bytes))
    _register("rel-part", f"{server.url}/c")
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True)
    stale = downloads / ".rel-part.ckpt.k1ll3d_x.part"  # what a kill -9 mid-download leaves
    stale.write_bytes(b"half")
    try:
        audiorep.load("rel-part", progress=False)
        assert not stale.exists() and _leftovers() == []
    finally:
        unregister_model("rel-part")
        server.close()


@pytest.mark.parametrize("case", ["truncated", "html", "garbage"])
def test_bad_downloads_are_blamed_on_the_download_and_not_kept(online, ckpt_bytes, case):
    def respond(h):
        if case == "truncated":  # the connection drops half-way
            send(h, ckpt_bytes[: len(ckpt_bytes) // 2], length=len(ckpt_bytes))
            h.close_connection = True
        elif case == "html":
            send(h, b"<!DOCTYPE html><html><body>Quota exceeded</body></html>", headers={"Content-Type": "text/html"})
        else:  # whole as far as HTTP can tell, but not a checkpoint (a host replacing the file)
            send(h, ckpt_bytes[: len(ckpt_bytes) // 2])

    server = Server(respond)
    _register("rel-bad", f"{server.url}/c")
    expected = {"truncated": r"stopped after \d+ of \d+ bytes", "html": "sent an HTML page",
                "garbage": "downloaded from .* is not a usable checkpoint"}[case]
    try:
        with pytest.raises(DownloadError, match=expected) as err:
            audiorep.load("rel-bad", progress=False)
        assert "nothing was kept" in str(err.value) and "\n" not in str(err.value)
        assert _leftovers() == []
        assert not (cache_dir() / "models" / "rel-bad").exists()
    finally:
        unregister_model("rel-bad")
        server.close()


def test_the_checksum_the_host_publishes_is_verified(online, ckpt_bytes, tmp_path):
    good = hashlib.sha256(ckpt_bytes).hexdigest()
    published = {"sha": good}

    def respond(h):  # the hub's way: a redirect carrying X-Linked-Etag, then the CDN's answer
        if h.path == "/resolve/states.ckpt":
            h.send_response(302)
            h.send_header("Location", "/cdn/blob")
            h.send_header("X-Linked-Etag", f'"{published["sha"]}"')
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            send(h, ckpt_bytes)

    server = Server(respond)
    try:
        assert download(f"{server.url}/resolve/states.ckpt", tmp_path / "ok.ckpt", progress=False).read_bytes() \
            == ckpt_bytes
        published["sha"] = "ab" * 32
        with pytest.raises(DownloadError, match="does not match the published " + "ab" * 32):
            download(f"{server.url}/resolve/states.ckpt", tmp_path / "bad.ckpt", progress=False)
        assert not (tmp_path / "bad.ckpt").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    finally:
        server.close()


def test_download_timeout_setting_is_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOREP_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(audiorep.ConfigError, match="AUDIOREP_DOWNLOAD_TIMEOUT='soon'"):
        download("http://127.0.0.1:9/x", tmp_path / "x", progress=False)


def test_downloaded_and_converted_files_follow_the_umask(online, ckpt_bytes):
    server = Server(lambda h: send(h, ckpt_bytes))
    _register("rel-mode", f"{server.url}/c")
    old = os.umask(0o022)
    try:
        audiorep.load("rel-mode", progress=False)
        folder = cache_dir() / "models" / "rel-mode"
        assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
            ".audiorep-files.json": 0o644, "README.md": 0o644, "config.json": 0o644, "model.safetensors": 0o644}
        assert folder.stat().st_mode & 0o777 == 0o755
        wav = [torch.randn(1600)]
        assert audiorep.load("rel-mode")(wav).last_hidden_state.isfinite().all()
    finally:
        os.umask(old)
        unregister_model("rel-mode")
        server.close()
