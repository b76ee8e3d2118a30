"""Published checkpoints by name (:func:`fetch_pretrained`), the Hugging Face hub both ways (``hf-hub:``
snapshots in, :func:`push_to_hub` out).

Checkpoints hosted on the Hugging Face hub come through ``huggingface_hub`` (``hf_hub_download`` /
``snapshot_download``), so its shared cache (``HF_HUB_CACHE``, ``HF_HOME``), offline mode (``HF_HUB_OFFLINE``),
mirrors (``HF_ENDPOINT``), tokens and revisions apply as they do for transformers. These variables are read
at each call, not once at import. Checkpoints hosted elsewhere come through :func:`download`.
``AUDIOREP_OFFLINE=1`` keeps both off the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (CheckpointError, ConfigError, DownloadError, PublishError, StorageError,
                     WeightsUnavailableError)
from ..locking import FileLock
from ..ownership import MARKER
from ..network import hf_endpoint, hub_library_offline, unreachable_reason
from ..registry import ModelSpec
from .cache import cache_dir, how_to_proceed, model_dir, offline_reason
from .convert import convert_to_folder
from .download import SHA256_HEX, download, download_timeout

if TYPE_CHECKING:
    from ..models.base import PretrainedModel

HUB_PREFIX = "hf-hub:"


def fetch_pretrained(spec: ModelSpec, progress: bool = True) -> Path:
    """Return the folder of the converted pretrained model, downloading and converting it on first use.

    A hub-hosted checkpoint (``spec.repo_id``) is fetched with ``hf_hub_download`` and stays in the hub's
    cache (shared with transformers and s3prl); offline, a copy found there is converted without the network.
    Other checkpoints are downloaded by :func:`download` and removed once converted.

    Safe to call from many processes at once: the first fetches under a lock, the others wait for it and
    then find the converted folder.
    """
    from ..models.base import CONFIG_NAME, WEIGHTS_NAME

    target = model_dir(spec.name)

    def cached() -> bool:
        return (target / CONFIG_NAME).is_file() and (target / WEIGHTS_NAME).is_file()

    if cached():
        return target
    if spec.weights_location is None:
        raise WeightsUnavailableError(f"{spec.name}: no published weights are known. " + how_to_proceed(spec))
    offline = offline_reason()
    if offline and spec.repo_id is None:  # the hub's cache may still hold a hub-hosted one: looked up below
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and {offline}. " + how_to_proceed(spec))
    lock = _fetch_lock(spec, offline)
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


# Beyond the download itself, time for the other process to convert what it fetched.
CONVERT_MARGIN_S = 600.0


def _fetch_lock(spec: ModelSpec, offline: str | None) -> FileLock:
    """The held fetch lock of ``spec``. Another process fetching it is waited for, said on stderr with its pid
    and how long at most; offline nothing it could be fetching is worth waiting for: refused at once."""
    lock = FileLock(cache_dir() / "locks" / f"{spec.name}.lock")
    if lock.acquire(timeout=0):
        return lock
    holder = lock.holder()
    if offline:
        raise WeightsUnavailableError(
            f"{spec.name}: another audiorep process (pid {holder}) is fetching it now, and with {offline} this one "
            f"does not wait; run again once that process is done (its lock: {lock.path})")
    wait = download_timeout() + CONVERT_MARGIN_S  # another process's whole download and conversion
    print(f"audiorep: {spec.name}: waiting for process {holder}, which is fetching it, for at most {wait:g} s "
          f"(AUDIOREP_DOWNLOAD_TIMEOUT + {CONVERT_MARGIN_S:g} s; its lock: {lock.path})", file=sys.stderr, flush=True)
    if not lock.acquire(timeout=wait):
        raise WeightsUnavailableError(f"{spec.name}: another process (pid {lock.holder()}) has been fetching it "
                                      f"for more than {wait:g} s; try again later, or end that process")
    return lock


def _fetch_url_checkpoint(spec: ModelSpec, raw: Path, target: Path, progress: bool) -> None:
    try:
        download(spec.url, raw, spec.sha256, progress=progress)
    except (DownloadError, StorageError):
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and the download from {spec.url} failed "
            f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}). " + how_to_proceed(spec)
        ) from exc


def _hub() -> Any:
    from ..optional import require

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
    from ..version import __version__

    options = {"library_name": "audiorep", "library_version": __version__, **hub_options()}
    if _network_off(options):
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


def _network_off(options: dict[str, Any]) -> str | None:
    """Why the hub must not (offline switch) or cannot (no route to it) be asked, or None."""
    return offline_reason() or unreachable_reason(options.get("endpoint") or hf_endpoint())


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
        with hub_library_offline(bool(options.get("local_files_only"))):
            path = Path(hf.hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, **options))
    except Exception as exc:  # noqa: BLE001 - every failure of the hub library: one line with the ways on
        offline = _network_off(options)
        where = f"not in the cache ({target}) nor in {_hub_cache_label(options)}"
        if offline and _hub_failure(exc) == "unreachable":
            why = offline
        else:
            why = f"the download from {spec.weights_location} failed ({_cause(exc)})"
        raise WeightsUnavailableError(f"{spec.name}: {where} and {why}. " + how_to_proceed(spec)) from exc
    _check_hub_file(path, spec.sha256, spec.weights_location or spec.name)
    return path


def _check_hub_file(path: Path, sha256: str | None, source: str) -> None:
    """DownloadError unless the file's sha256 is the expected one or, where none is given, the one the hub
    published (its LFS files are stored under their sha256 in the cache's blobs/ folder)."""
    blob = path.resolve()
    published = blob.name if SHA256_HEX.match(blob.name) else None
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
    from ..models.base import CONFIG_NAME, WEIGHTS_NAME, read_config

    repo_id, revision = split_hub_source(text)
    label = f"{HUB_PREFIX}{text}"
    hf = _hub()
    options = _hub_download_options(progress)
    options.pop("tqdm_class", None)  # snapshot_download takes an asyncio tqdm class; keep its default
    try:
        with hub_library_offline(bool(options.get("local_files_only"))):
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
        offline = _network_off(options)
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


def push_to_hub(model: "PretrainedModel", repo_id: str, *, revision: str | None = None, private: bool | None = None,
                token: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                extra: dict[str, Any] | None = None, replace_card: bool = False) -> str:
    """Publish ``model`` on the Hugging Face hub as ``repo_id`` (created if missing; ``private`` applies then).

    ``save_pretrained`` into a temporary folder, then ``HfApi.create_repo(exist_ok=True)`` and one
    ``upload_folder`` commit of config.json + model.safetensors, and the model card README.md where the
    repository has none (or ``replace_card``); other files in the repository stay. ``token`` defaults to the
    hub's own (``HF_TOKEN``, ``hf auth login``); ``HF_ENDPOINT`` picks another hub. ``extra`` modules are saved beside the encoder as in ``save_pretrained``. Returns the commit's URL;
    load it back with ``audiorep.load("hf-hub:" + repo_id)``.
    """
    import tempfile

    from ..version import __version__

    split_hub_source(repo_id if revision is None else f"{repo_id}@{revision}")
    offline = offline_reason()
    if offline:
        raise PublishError(f"{repo_id}: cannot push with {offline}; unset it to publish")
    hf = _hub()
    api = hf.HfApi(endpoint=hub_options().get("endpoint"), token=token)
    message = commit_message or f"audiorep {__version__}: {model.architecture} model"
    with tempfile.TemporaryDirectory(prefix="audiorep-push-") as tmp:
        model.save_pretrained(tmp, extra=extra, repo_id=repo_id)
        (Path(tmp) / MARKER).unlink(missing_ok=True)  # a local bookkeeping file, not part of the model
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


