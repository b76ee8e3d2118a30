"""The weights cache: where converted models live (AUDIOREP_HOME) and how published checkpoints get there.

Checkpoints hosted on the Hugging Face hub come through ``huggingface_hub`` (``hf_hub_download`` /
``snapshot_download``), so its shared cache (``HF_HUB_CACHE``, ``HF_HOME``), offline mode (``HF_HUB_OFFLINE``),
mirrors (``HF_ENDPOINT``), tokens and revisions apply as they do for transformers. These variables are read
at each call, not once at import. Checkpoints hosted elsewhere come through :func:`download`.
``AUDIOREP_OFFLINE=1`` keeps both off the network.
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
from typing import TYPE_CHECKING, Any

from .errors import (CheckpointError, ConfigError, DownloadError, PublishError, StorageError,
                     WeightsUnavailableError)
from .fileio import atomic_directory, make_temp_file, storage_error
from .locking import FileLock
from .registry import ModelSpec

if TYPE_CHECKING:
    from .models.base import PretrainedModel

HUB_PREFIX = "hf-hub:"


def cache_dir() -> Path:
    """``$AUDIOREP_HOME`` or ``~/.cache/audiorep``."""
    return Path(os.environ.get("AUDIOREP_HOME", Path.home() / ".cache" / "audiorep")).expanduser()


def model_dir(name: str) -> Path:
    """Folder holding the converted copy of a named model."""
    return cache_dir() / "models" / name


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


def _how_to_proceed(spec: ModelSpec) -> str:
    return (
        f"Ways on: audiorep.load({spec.name!r}, pretrained=False) for random weights "
        "(on the command line: audiorep extract --no-pretrained, or a folder or checkpoint path in place of "
        "the name); "
        f"audiorep.load('path/to/states-*.ckpt') or a folder written by save_pretrained; "
        f"put a converted model at {model_dir(spec.name)} (audiorep convert CKPT {model_dir(spec.name)}); "
        "or pretrain your own with recipes/pretrain_aalbert.sh."
    )


# A whole download gets this long (AUDIOREP_DOWNLOAD_TIMEOUT overrides it); a server silent for STALL_S
# seconds is given up on sooner. The published checkpoints are 100-350 MB.
DEFAULT_DOWNLOAD_TIMEOUT_S = 1800.0
STALL_S = 30.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    return value if _SHA256.match(value) else None


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


def fetch_pretrained(spec: ModelSpec, progress: bool = True) -> Path:
    """Return the folder of the converted pretrained model, downloading and converting it on first use.

    A hub-hosted checkpoint (``spec.repo_id``) is fetched with ``hf_hub_download`` and stays in the hub's
    cache (shared with transformers and s3prl); offline, a copy found there is converted without the network.
    Other checkpoints are downloaded by :func:`download` and removed once converted.

    Safe to call from many processes at once: the first fetches under a lock, the others wait for it and
    then find the converted folder.
    """
    from .models.base import CONFIG_NAME, WEIGHTS_NAME

    target = model_dir(spec.name)

    def cached() -> bool:
        return (target / CONFIG_NAME).is_file() and (target / WEIGHTS_NAME).is_file()

    if cached():
        return target
    if spec.weights_location is None:
        raise WeightsUnavailableError(f"{spec.name}: no published weights are known. " + _how_to_proceed(spec))
    offline = offline_reason()
    if offline and spec.repo_id is None:  # the hub's cache may still hold a hub-hosted one: looked up below
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and {offline}. " + _how_to_proceed(spec))
    lock = FileLock(cache_dir() / "locks" / f"{spec.name}.lock")
    # long enough for another process's whole download and conversion
    if not lock.acquire(timeout=download_timeout() + 600):
        raise WeightsUnavailableError(f"{spec.name}: another process (pid {lock.holder()}) has been fetching it "
                                      f"for too long; try again later")
    try:
        if cached():  # fetched by another process while this one waited
            return target
        if spec.repo_id is not None:
            raw = _fetch_hub_checkpoint(spec, target, progress)
        else:
            raw = cache_dir() / "downloads" / f"{spec.name}.ckpt"
            _fetch_url_checkpoint(spec, raw, target, progress)
        try:
            convert_to_folder(raw, target, spec.source_format, overwrite=True)
        except CheckpointError as exc:
            if spec.repo_id is not None:
                _forget_hub_file(raw)  # so the next try downloads it again
            raise DownloadError(f"{spec.name}: the file downloaded from {spec.weights_location} is not a usable "
                                f"checkpoint (cut short or replaced by the host?): {exc}; nothing was kept") from exc
        finally:
            if spec.repo_id is None:
                raw.unlink(missing_ok=True)  # load() reads the converted folder; keeping both would double the cache
        return target
    finally:
        lock.release()


def _fetch_url_checkpoint(spec: ModelSpec, raw: Path, target: Path, progress: bool) -> None:
    try:
        download(spec.url, raw, spec.sha256, progress=progress)
    except (DownloadError, StorageError):
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and the download from {spec.url} failed "
            f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}). " + _how_to_proceed(spec)
        ) from exc


def _hub() -> Any:
    from .optional import require

    return require("huggingface_hub", "weights from the Hugging Face hub")


def hub_options() -> dict[str, Any]:
    """The hub's cache folder and endpoint from the environment now, for huggingface_hub calls.

    huggingface_hub reads ``HF_HUB_CACHE``/``HF_HOME``/``HF_ENDPOINT`` once, when it is first imported; reading
    them per call lets a program (or a test) set them after that and still be obeyed.
    """
    options: dict[str, Any] = {}
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    if cache:
        options["cache_dir"] = os.path.expanduser(os.path.expandvars(cache))
    if os.environ.get("HF_ENDPOINT"):
        options["endpoint"] = os.environ["HF_ENDPOINT"].rstrip("/")
    return options


def _hub_cache_label(options: dict[str, Any]) -> str:
    return options.get("cache_dir") or "the Hugging Face hub cache"


def _hub_download_options(progress: bool) -> dict[str, Any]:
    from . import __version__

    options = {"library_name": "audiorep", "library_version": __version__, **hub_options()}
    if offline_reason():
        options["local_files_only"] = True  # never a request: the cache or a clear error
    if not progress:
        import inspect

        from tqdm.auto import tqdm

        if "tqdm_class" in inspect.signature(_hub().hf_hub_download).parameters:
            class Quiet(tqdm):  # type: ignore[misc, valid-type]
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    kwargs["disable"] = True
                    super().__init__(*args, **kwargs)

            options["tqdm_class"] = Quiet
    return options


def _hub_failure(exc: BaseException) -> str:
    """What went wrong, from the class of a huggingface_hub error (matched by name: it moved between releases)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
        return "unreachable"  # offline, or the hub could not be reached, and nothing cached
    if "GatedRepoError" in names or "RepositoryNotFoundError" in names:
        return "repository"
    if "RevisionNotFoundError" in names:
        return "revision"
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return "file"
    return "other"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _cause(exc: BaseException) -> str:
    """``Type: first line`` of the error at the root of ``exc``: the hub library wraps a refused connection in a
    paragraph about checking one's connection; the refusal itself says more."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _fetch_hub_checkpoint(spec: ModelSpec, target: Path, progress: bool) -> Path:
    """A registered model's checkpoint file in the hub cache (downloaded if needed and allowed), checked."""
    hf = _hub()
    options = _hub_download_options(progress)
    try:
        path = Path(hf.hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, **options))
    except Exception as exc:  # noqa: BLE001 - every failure of the hub library: one line with the ways on
        offline = offline_reason()
        where = f"not in the cache ({target}) nor in {_hub_cache_label(options)}"
        if offline and _hub_failure(exc) == "unreachable":
            why = offline
        else:
            why = f"the download from {spec.weights_location} failed ({_cause(exc)})"
        raise WeightsUnavailableError(f"{spec.name}: {where} and {why}. " + _how_to_proceed(spec)) from exc
    _check_hub_file(path, spec.sha256, spec.weights_location or spec.name)
    return path


def _check_hub_file(path: Path, sha256: str | None, source: str) -> None:
    """DownloadError unless the file's sha256 is the expected one or, where none is given, the one the hub
    published (its LFS files are stored under their sha256 in the cache's blobs/ folder)."""
    blob = path.resolve()
    published = blob.name if _SHA256.match(blob.name) else None
    expected = (sha256 or published or "").lower()
    if not expected:
        return
    digest = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        _forget_hub_file(path)
        raise DownloadError(f"{source}: the sha256 {digest.hexdigest()} of the cached file does not match the "
                            f"{'expected' if sha256 else 'published'} {expected}; it was removed from the cache")


def _forget_hub_file(path: Path) -> None:
    """Remove a bad file from the hub cache (its blob and the snapshot's link), so the next call fetches it anew."""
    with contextlib.suppress(OSError):
        blob = path.resolve()
        if blob != path:
            blob.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def split_hub_source(text: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; ConfigError for what cannot be a hub repository id."""
    repo_id, at, revision = text.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or (at and not revision):
        raise ConfigError(f"{HUB_PREFIX}{text}: expected {HUB_PREFIX}org/name or {HUB_PREFIX}org/name@revision")
    return repo_id, revision or None


def hub_snapshot(text: str, weights: bool = True, progress: bool = True) -> Path:
    """The local folder of an audiorep-format hub repository (``org/name[@revision]``): its config.json and
    (``weights``) model.safetensors, from the hub cache or downloaded into it (one resolved commit for both)."""
    from .models.base import CONFIG_NAME, WEIGHTS_NAME, read_config

    repo_id, revision = split_hub_source(text)
    label = f"{HUB_PREFIX}{text}"
    hf = _hub()
    options = _hub_download_options(progress)
    options.pop("tqdm_class", None)  # snapshot_download takes an asyncio tqdm class; keep its default
    try:
        folder = Path(hf.snapshot_download(repo_id, revision=revision,
                                           allow_patterns=[CONFIG_NAME, WEIGHTS_NAME][:1 + weights], **options))
    except Exception as exc:  # noqa: BLE001 - every failure of the hub library: one line
        kind = _hub_failure(exc)
        endpoint = options.get("endpoint") or "the hub"
        if kind == "repository":
            raise ConfigError(f"{label}: no such repository on {endpoint} (a private or gated one needs a token: "
                              "HF_TOKEN or `hf auth login`)") from exc
        if kind == "revision":
            raise ConfigError(f"{label}: the repository has no revision {revision!r}") from exc
        offline = offline_reason()
        why = offline if offline and kind == "unreachable" else (
            f"fetching it from {endpoint} failed ({_cause(exc)})")
        raise WeightsUnavailableError(
            f"{label}: not in {_hub_cache_label(options)} and {why}. Ways on: go online (unset AUDIOREP_OFFLINE and "
            "HF_HUB_OFFLINE), point HF_ENDPOINT at a reachable mirror, or put the repository's config.json and "
            "model.safetensors in a folder and load its path") from exc
    try:
        read_config(folder)
    except CheckpointError as exc:
        raise CheckpointError(f"{label}: not an audiorep repository ({exc}); a transformers speech encoder "
                              f"loads as hf:{repo_id}") from exc
    return folder


def push_folder(model: "PretrainedModel", repo_id: str, *, revision: str | None = None, private: bool | None = None,
                token: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                extra: dict[str, Any] | None = None, replace_card: bool = False) -> str:
    """Publish ``model`` as an audiorep repository (what :meth:`PretrainedModel.push_to_hub` runs).

    ``save_pretrained`` into a temporary folder, then ``HfApi.create_repo(exist_ok=True)`` and one
    ``upload_folder`` commit of config.json + model.safetensors, and the model card README.md where the
    repository has none (or ``replace_card``); other files in the repository stay.
    Returns the commit's URL.
    """
    import tempfile

    from . import __version__

    split_hub_source(repo_id if revision is None else f"{repo_id}@{revision}")
    offline = offline_reason()
    if offline:
        raise PublishError(f"{repo_id}: cannot push with {offline}; unset it to publish")
    hf = _hub()
    api = hf.HfApi(endpoint=hub_options().get("endpoint"), token=token)
    message = commit_message or f"audiorep {__version__}: {model.architecture} model"
    with tempfile.TemporaryDirectory(prefix="audiorep-push-") as tmp:
        model.save_pretrained(tmp, extra=extra, repo_id=repo_id)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if not replace_card and api.file_exists(repo_id, "README.md", revision=revision, repo_type="model"):
                Path(tmp, "README.md").unlink(missing_ok=True)  # the repository's own card stays
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                                     commit_message=message, create_pr=create_pr)
        except Exception as exc:  # noqa: BLE001 - auth, permission, network: one line naming the repository
            raise PublishError(f"{repo_id}: the upload failed ({_cause(exc)}); "
                               "a token with write access comes from HF_TOKEN or `hf auth login`") from exc
    return str(getattr(info, "commit_url", None) or getattr(info, "pr_url", None) or info)


def check_output_folder(target: Path, overwrite: bool = False) -> None:
    """Refuse (ConfigError) an output folder that writing a model into could cost the user something.

    Accepted: a new path, an empty folder, or with ``overwrite`` a model folder audiorep wrote (it holds
    config.json or model.safetensors). Refused: a file, and any other non-empty folder, even with
    ``overwrite``: audiorep never empties a folder it did not write.
    """
    from .models.base import CONFIG_NAME, WEIGHTS_NAME

    if not target.exists():
        if target.is_symlink():
            raise ConfigError(f"{target}: a broken symbolic link; choose another output folder")
        return
    if not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder; give a new or empty folder for the model")
    if not any(target.iterdir()):
        return
    if not ((target / CONFIG_NAME).is_file() or (target / WEIGHTS_NAME).is_file()):
        raise ConfigError(f"{target}: not empty and not an audiorep model folder (no {CONFIG_NAME} or "
                          f"{WEIGHTS_NAME}); audiorep only writes into a new, an empty or its own model folder")
    if not overwrite:
        raise ConfigError(f"{target}: already holds an audiorep model; pass --overwrite to replace its "
                          f"{CONFIG_NAME} and {WEIGHTS_NAME}, or choose another folder")


def convert_to_folder(ckpt: Path, target: Path, source_format: str = "s3prl", overwrite: bool = False) -> Path:
    """Convert a checkpoint into an audiorep model folder (``target``), checked by :func:`check_output_folder`.

    A new folder appears whole or not at all. Into an existing (empty, or with ``overwrite`` audiorep's
    own) folder only config.json and model.safetensors are written; any other file in it stays.
    """
    from .compat.s3prl import load_s3prl_checkpoint
    from .models.base import CONFIG_NAME

    target = Path(target)
    if source_format != "s3prl":
        raise CheckpointError(f"{ckpt}: unknown source format {source_format!r}")
    check_output_folder(target, overwrite)  # before reading the checkpoint: a refusal costs nothing
    model, head = load_s3prl_checkpoint(ckpt, with_head=True)
    extra = {"head": head} if head is not None else None
    if target.is_dir():
        # config.json goes first: a write cut short leaves a folder that load() refuses as incomplete
        # (and --overwrite accepts again), never an old config beside new weights
        (target / CONFIG_NAME).unlink(missing_ok=True)
        model.save_pretrained(target, extra=extra)
    else:
        with atomic_directory(target) as staging:
            model.save_pretrained(staging, extra=extra)
    return target
