"""Weights through huggingface_hub, offline: the hub's own cache layout stands in for the hub.

``hub_cache`` writes what ``hf_hub_download``/``snapshot_download`` leave behind (``models--org--name/blobs/<sha256>``,
``snapshots/<commit>/<path>`` linking to the blob, ``refs/<branch>``), so loading with ``HF_HUB_OFFLINE=1`` runs the
library's real lookup of repository, revision and file. ``push_to_hub`` runs against a fake ``HfApi`` that
keeps the files it was given; those files, put in the cache layout, load back: a full publish -> load round trip.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import torch

import audiorep
from audiorep.cli import main
from audiorep.weights.s3prl import export_s3prl_checkpoint
from audiorep.ownership import MARKER
from audiorep.weights.hub import push_to_hub
from audiorep.errors import ConfigError, DownloadError, PublishError, WeightsUnavailableError
from audiorep.weights.cache import model_dir
from audiorep.registry import ModelSpec, get_spec, register_model, unregister_model

pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT,
              refs: tuple[str, ...] = ("main",)) -> Path:
    """Files of one commit of a model repository, laid out as huggingface_hub caches them; the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    """What a push uploads from a saved folder: everything but audiorep's local ownership marker."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MARKER}


@pytest.fixture
def endpoint(monkeypatch):
    """HF_ENDPOINT on a local server that records every request and answers 503: offline, it must stay empty."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            hits.append(f"HEAD {self.path}")
            self.send_response(503)
            self.end_headers()

        def do_GET(self):
            hits.append(f"GET {self.path}")
            self.send_response(503)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    yield hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline_hub(monkeypatch, endpoint) -> Path:
    """The test's own hub cache, with the hub's offline switch on (and audiorep's off: the hub's alone must do);
    no request may reach the endpoint."""
    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield Path(os.environ["HF_HUB_CACHE"])
    assert endpoint == [], "offline, yet the hub was asked"


def _same_outputs(a, b) -> bool:
    wav = [torch.randn(3200), torch.randn(2000)]
    with torch.no_grad():
        ha, hb = a(wav).hidden_states, b(wav).hidden_states
    return len(ha) == len(hb) and all(torch.equal(x, y) for x, y in zip(ha, hb))


def test_hf_hub_repository_loads_from_the_hub_cache(tmp_path, offline_hub, tiny_model):
    model, older = tiny_model().eval(), tiny_model().eval()
    hub_cache(offline_hub, "org/tiny", folder_files(model.save_pretrained(tmp_path / "new")))
    old_commit = "f" * 40
    hub_cache(offline_hub, "org/tiny", folder_files(older.save_pretrained(tmp_path / "old")), commit=old_commit,
              refs=("v1",))

    for source, expected in [("hf-hub:org/tiny", model), (f"hf-hub:org/tiny@{COMMIT}", model),
                             ("hf-hub:org/tiny@v1", older), (f"hf-hub:org/tiny@{old_commit}", older)]:
        loaded = audiorep.load(source, progress=False)
        assert _same_outputs(loaded, expected), source
    with pytest.raises(WeightsUnavailableError, match="not in"):  # offline, a revision never fetched
        audiorep.load("hf-hub:org/tiny@v2")
    fresh = audiorep.load("hf-hub:org/tiny", pretrained=False)  # the config only: same shape, new weights
    assert fresh.config == model.config and not _same_outputs(fresh, model)


def test_hf_hub_errors_are_one_line_and_name_the_way_on(offline_hub, tiny_model):
    t0 = time.time()
    with pytest.raises(WeightsUnavailableError) as err:
        audiorep.load("hf-hub:org/absent")
    assert time.time() - t0 < 5  # no network attempt, no retries
    msg = str(err.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "HF_ENDPOINT" in msg and msg.startswith("hf-hub:org/absent")
    with pytest.raises(ConfigError, match="org/name@revision"):
        audiorep.load("hf-hub:org/a/b")
    with pytest.raises(ConfigError, match="org/name@revision"):
        audiorep.load("hf-hub:org/tiny@")
    # a transformers repository is not an audiorep one: say which prefix loads it
    hub_cache(offline_hub, "org/w2v", {"config.json": b'{"model_type": "wav2vec2"}', "model.safetensors": b"x"})
    with pytest.raises(audiorep.CheckpointError, match="hf:org/w2v"):
        audiorep.load("hf-hub:org/w2v")


def _register_hub_hosted(name, cfg):
    return register_model(ModelSpec(name, lambda: cfg, repo_id="org/ckpts", filename="base/states-10.ckpt"),
                          overwrite=True)


def test_registered_hub_checkpoint_converts_from_the_hub_cache(tmp_path, offline_hub, tiny_model):
    model = tiny_model().eval()
    ckpt = tmp_path / "states-10.ckpt"
    export_s3prl_checkpoint(model, ckpt)
    snapshot = hub_cache(offline_hub, "org/ckpts", {"base/states-10.ckpt": ckpt.read_bytes()})
    _register_hub_hosted("test-hubbed", model.config)
    try:
        loaded = audiorep.load("test-hubbed", progress=False)
        assert _same_outputs(loaded, model)
        # the checkpoint stays in the shared hub cache; audiorep keeps its converted folder
        assert (snapshot / "base/states-10.ckpt").is_file()
        assert (model_dir("test-hubbed") / "model.safetensors").is_file()
    finally:
        unregister_model("test-hubbed")


def test_registered_hub_checkpoint_with_a_wrong_sha256_is_refused_and_dropped(tmp_path, offline_hub, tiny_model):
    model = tiny_model().eval()
    ckpt = tmp_path / "states-10.ckpt"
    export_s3prl_checkpoint(model, ckpt)
    snapshot = hub_cache(offline_hub, "org/ckpts", {"base/states-10.ckpt": ckpt.read_bytes()})
    link = snapshot / "base/states-10.ckpt"
    wrong = link.resolve().with_name("ab" * 32)  # a blob whose content is not what its name (the hub's sha256) says
    link.resolve().rename(wrong)
    link.unlink()
    link.symlink_to(os.path.relpath(wrong, link.parent))
    _register_hub_hosted("test-badsum", model.config)
    try:
        with pytest.raises(DownloadError, match="does not match the published " + "ab" * 32):
            audiorep.load("test-badsum", progress=False)
        assert not wrong.exists() and not link.is_symlink()  # the next try fetches it anew
        assert not model_dir("test-badsum").exists()
    finally:
        unregister_model("test-badsum")


def _resolve_server(files: dict[str, bytes], published: dict[str, str] | None = None):
    """A local stand-in for the hub's resolve API (HEAD + GET /{repo}/resolve/{rev}/{path}), as huggingface_hub
    uses it: commit, ETag and X-Linked-Etag (the sha256 the hub publishes; ``published`` overrides it)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _head(self):
            hits.append(f"{self.command} {self.path}")
            data = files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            sha = (published or {}).get(self.path) or hashlib.sha256(data).hexdigest()
            self.send_response(200)
            for key, value in [("X-Repo-Commit", COMMIT), ("ETag", f'"{sha}"'), ("X-Linked-Etag", f'"{sha}"'),
                               ("X-Linked-Size", str(len(data))), ("Content-Length", str(len(data)))]:
                self.send_header(key, value)
            self.end_headers()
            return data

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            data = self._head()
            if data is not None:
                self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@pytest.fixture
def online(monkeypatch):
    """Both offline switches off, also inside huggingface_hub, which read HF_HUB_OFFLINE when a test before
    this one first imported its constants."""
    import huggingface_hub.constants

    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")


def test_registered_hub_checkpoint_downloads_through_the_endpoint(tmp_path, monkeypatch, tiny_model, online):
    model = tiny_model().eval()
    ckpt = tmp_path / "states-10.ckpt"
    export_s3prl_checkpoint(model, ckpt)
    path = "/org/ckpts/resolve/main/base/states-10.ckpt"
    server, hits = _resolve_server({path: ckpt.read_bytes()})
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    _register_hub_hosted("test-online", model.config)
    try:
        assert _same_outputs(audiorep.load("test-online", progress=False), model)
        assert hits == [f"HEAD {path}", f"GET {path}"]
        blob = Path(os.environ["HF_HUB_CACHE"]) / "models--org--ckpts" / "blobs" / hashlib.sha256(
            ckpt.read_bytes()).hexdigest()
        assert blob.is_file()  # in the shared hub cache, under the sha256 the hub published
        audiorep.load("test-online")  # the converted copy: no second request
        assert len(hits) == 2
    finally:
        unregister_model("test-online")
        server.shutdown()
        server.server_close()


def test_registered_hub_checkpoint_not_matching_the_published_sha256(tmp_path, monkeypatch, tiny_model, online):
    model = tiny_model().eval()
    ckpt = tmp_path / "states-10.ckpt"
    export_s3prl_checkpoint(model, ckpt)
    path = "/org/ckpts/resolve/main/base/states-10.ckpt"
    server, hits = _resolve_server({path: ckpt.read_bytes()}, published={path: "cd" * 32})
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    _register_hub_hosted("test-online-bad", model.config)
    try:
        with pytest.raises(DownloadError, match="does not match the published " + "cd" * 32):
            audiorep.load("test-online-bad", progress=False)
        repo = Path(os.environ["HF_HUB_CACHE"]) / "models--org--ckpts"
        assert not list((repo / "blobs").iterdir()) and not model_dir("test-online-bad").exists()
    finally:
        unregister_model("test-online-bad")
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("switch", ["AUDIOREP_OFFLINE", "HF_HUB_OFFLINE"])
def test_registered_hub_model_offline_with_nothing_cached(monkeypatch, endpoint, switch):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1" if switch == "AUDIOREP_OFFLINE" else "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if switch == "HF_HUB_OFFLINE" else "0")
    assert get_spec("tera-base").repo_id == "s3prl/tera"
    t0 = time.time()
    with pytest.raises(WeightsUnavailableError) as err:
        audiorep.load("tera-base")
    assert time.time() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and f"{switch}=1" in msg and "pretrained=False" in msg and "audiorep convert" in msg
    assert endpoint == []


def test_only_the_dropbox_checkpoint_is_a_plain_download():
    specs = [get_spec(n) for n in ("mockingjay-base", "mockingjay-large", "aalbert-base", "tera-base")]
    assert [s.repo_id is not None for s in specs] == [False, True, True, True]
    assert "dropbox" in specs[0].url
    with pytest.raises(ConfigError, match="not both"):
        ModelSpec("x", lambda: None, url="http://h/x", repo_id="a/b", filename="c")


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: records calls and the uploaded folder's files."""

    calls: list = []

    def __init__(self, endpoint=None, token=None):
        self.calls.append(("init", {"endpoint": endpoint, "token": token}))

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    existing: set = set()  # files the fake repository already holds

    def file_exists(self, repo_id, filename, **kw):
        return filename in self.existing

    def upload_folder(self, *, repo_id, folder_path, **kw):
        files = {str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", {"repo_id": repo_id, "files": files, **kw}))

        class Info:
            commit_url = f"https://hub.test/{repo_id}/commit/{COMMIT}"
        return Info()


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    FakeHfApi.existing = set()
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("AUDIOREP_OFFLINE", "0")
    return FakeHfApi


def test_push_to_hub_uploads_a_folder_that_loads_back(monkeypatch, fake_api, tiny_model):
    model = tiny_model().eval()
    url = push_to_hub(model, "me/tiny", private=True, token="t0k", commit_message="first")
    assert url == f"https://hub.test/me/tiny/commit/{COMMIT}"
    (_, init), (_, created), (_, upload) = fake_api.calls
    assert init["token"] == "t0k" and created["repo_id"] == "me/tiny" and created["private"] is True
    assert created["exist_ok"] is True and upload["commit_message"] == "first" and upload["create_pr"] is False
    assert sorted(upload["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert b'audiorep.load("hf-hub:me/tiny")' in upload["files"]["README.md"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache(Path(os.environ["HF_HUB_CACHE"]), "me/tiny", upload["files"])
    assert _same_outputs(audiorep.load("hf-hub:me/tiny"), model)


def test_push_failures_are_one_line(monkeypatch, fake_api, tiny_model):
    def refuse(self, *, repo_id, folder_path, **kw):
        raise OSError("401 Client Error: Unauthorized for url\nmore detail")

    monkeypatch.setattr(FakeHfApi, "upload_folder", refuse)
    with pytest.raises(PublishError, match=r"me/tiny: the upload failed \(OSError: 401 Client Error.*HF_TOKEN") as err:
        push_to_hub(tiny_model(), "me/tiny")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE=1"):
        push_to_hub(tiny_model(), "me/tiny")
    with pytest.raises(ConfigError):
        push_to_hub(tiny_model(), "not a repo")


def test_push_command(tmp_path, fake_api, tiny_model, capsys):
    folder = tiny_model().save_pretrained(tmp_path / "m")
    assert main(["push", str(folder), "me/cli", "--revision", "dev", "--message", "from the CLI"]) == 0
    assert capsys.readouterr().out.strip() == f"https://hub.test/me/cli/commit/{COMMIT}"
    upload = dict(fake_api.calls)["upload_folder"]
    assert upload["revision"] == "dev" and upload["commit_message"] == "from the CLI"
    card = upload["files"].pop("README.md")
    assert upload["files"] == {k: v for k, v in folder_files(folder).items() if k != "README.md"}
    assert b"# me/cli" in card
    # a bad repository id is refused before anything is loaded or uploaded
    fake_api.calls.clear()
    assert main(["push", str(folder), "bad id"]) == 2
    assert fake_api.calls == [] and "org/name" in capsys.readouterr().err


def test_push_keeps_the_repository_card_unless_asked(fake_api, tiny_model):
    fake_api.existing = {"README.md"}
    push_to_hub(tiny_model(), "me/tiny")
    assert "README.md" not in dict(fake_api.calls)["upload_folder"]["files"]
    fake_api.calls.clear()
    push_to_hub(tiny_model(), "me/tiny", replace_card=True)
    assert "README.md" in dict(fake_api.calls)["upload_folder"]["files"]
