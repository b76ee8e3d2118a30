import http.server
import threading
import time

import pytest
import torch

import audiorep
from audiorep.weights.s3prl import export_s3prl_checkpoint
from audiorep.models import MockingjayConfig, SpecPredictionHead
from audiorep.registry import ModelSpec, register_model, unregister_model


def test_save_pretrained_roundtrip(tmp_path, tiny_model):
    m = tiny_model().eval()
    m.save_pretrained(tmp_path / "m", extra={"head": SpecPredictionHead(m.config)})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".audiorep-files.json", "README.md", "config.json", "model.safetensors"]
    m2 = audiorep.load(tmp_path / "m")
    wav = [torch.randn(3200)]
    assert torch.equal(m(wav).last_hidden_state, m2(wav).last_hidden_state)
    assert m2.feature_config == m.feature_config and m2.config == m.config


def test_truncated_and_foreign_folders(tmp_path, tiny_model):
    m = tiny_model().eval()
    d = m.save_pretrained(tmp_path / "m")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(audiorep.CheckpointError, match="model.safetensors"):
        audiorep.load(d)
    d2 = tiny_model(num_layers=3).save_pretrained(tmp_path / "three")
    (d2 / "config.json").write_text((d / "config.json").read_text())  # 2-layer config, 3-layer weights
    with pytest.raises(audiorep.CheckpointError, match="do not fit"):
        audiorep.load(d2)
    (d / "config.json").write_text('{"format": "audiorep", "architecture": "wav2vec9", "model": {}, "features": {}}')
    with pytest.raises(audiorep.CheckpointError, match="unknown architecture"):
        audiorep.load(d)
    with pytest.raises(audiorep.CheckpointError, match="no config.json"):
        audiorep.load(tmp_path)


def test_unknown_name():
    with pytest.raises(audiorep.ConfigError, match="neither a registered model"):
        audiorep.load("aalbert-huge")


def test_offline_without_cache_fails_fast_with_directions():
    t0 = time.time()
    with pytest.raises(audiorep.WeightsUnavailableError, match="pretrained=False"):
        audiorep.load("aalbert-base")
    assert time.time() - t0 < 2


def _serve(payload: bytes, hits: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_convert_cache(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    m = tiny_model().eval()
    ck = tmp_path / "states-10.ckpt"
    export_s3prl_checkpoint(m, ck, head=SpecPredictionHead(m.config))
    hits: list = []
    server = _serve(ck.read_bytes(), hits)
    cfg = m.config
    spec = ModelSpec("test-tiny", lambda: cfg, url=f"http://127.0.0.1:{server.server_port}/states-10.ckpt")
    register_model(spec)
    try:
        loaded = audiorep.load("test-tiny", progress=False)
        assert hits == ["/states-10.ckpt"]
        wav = [torch.randn(1600)]
        assert (loaded(wav).last_hidden_state - m(wav).last_hidden_state).abs().max() < 1e-6
        server.shutdown()
        again = audiorep.load("test-tiny")  # from the converted cache: no second request
        assert len(hits) == 1 and torch.equal(again(wav).last_hidden_state, loaded(wav).last_hidden_state)
    finally:
        unregister_model("test-tiny")
        server.shutdown()


def test_download_failure_and_bad_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    hits: list = []
    server = _serve(b"not a checkpoint", hits)
    port = server.server_port
    register_model(ModelSpec("test-bad", MockingjayConfig, url=f"http://127.0.0.1:{port}/x", sha256="00" * 32))
    try:
        with pytest.raises(audiorep.CheckpointError, match="sha256"):
            audiorep.load("test-bad", progress=False)
        server.shutdown()
        server.server_close()
        t0 = time.time()
        with pytest.raises(audiorep.WeightsUnavailableError, match="download .* failed"):
            audiorep.load("test-bad", progress=False)
        assert time.time() - t0 < 20
    finally:
        unregister_model("test-bad")
