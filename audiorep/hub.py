"""The weights cache: where converted models live (AUDIOREP_HOME) and how published checkpoints get there."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .errors import CheckpointError, WeightsUnavailableError
from .fileio import atomic_directory, make_temp_file
from .registry import ModelSpec


def cache_dir() -> Path:
    """``$AUDIOREP_HOME`` or ``~/.cache/audiorep``."""
    return Path(os.environ.get("AUDIOREP_HOME", Path.home() / ".cache" / "audiorep")).expanduser()


def model_dir(name: str) -> Path:
    """Folder holding the converted copy of a named model."""
    return cache_dir() / "models" / name


def _how_to_proceed(spec: ModelSpec) -> str:
    return (
        f"Ways on: audiorep.load({spec.name!r}, pretrained=False) for random weights "
        "(on the command line: audiorep extract --no-pretrained, or a folder or checkpoint path in place of "
        "the name); "
        f"audiorep.load('path/to/states-*.ckpt') or a folder written by save_pretrained; "
        f"put a converted model at {model_dir(spec.name)} (audiorep convert CKPT {model_dir(spec.name)}); "
        "or pretrain your own with recipes/pretrain_aalbert.sh."
    )


def download(url: str, dest: Path, sha256: str | None = None, timeout: float | None = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` (atomically, with a progress bar), verifying ``sha256`` when given."""
    from tqdm.auto import tqdm

    timeout = float(os.environ.get("AUDIOREP_DOWNLOAD_TIMEOUT", 15)) if timeout is None else timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp_file(dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "audiorep"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if sha256 and digest.hexdigest() != sha256.lower():
            raise CheckpointError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def fetch_pretrained(spec: ModelSpec, progress: bool = True) -> Path:
    """Return the folder of the converted pretrained model, downloading and converting it on first use."""
    from .models.base import CONFIG_NAME, WEIGHTS_NAME

    target = model_dir(spec.name)
    if (target / CONFIG_NAME).is_file() and (target / WEIGHTS_NAME).is_file():
        return target
    if spec.url is None:
        raise WeightsUnavailableError(f"{spec.name}: no published weights are known. " + _how_to_proceed(spec))
    if os.environ.get("AUDIOREP_OFFLINE") == "1":
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and AUDIOREP_OFFLINE=1. " + _how_to_proceed(spec))
    raw = cache_dir() / "downloads" / f"{spec.name}.ckpt"
    try:
        download(spec.url, raw, spec.sha256, progress=progress)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise WeightsUnavailableError(
            f"{spec.name}: not in the cache ({target}) and the download from {spec.url} failed "
            f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}). " + _how_to_proceed(spec)
        ) from exc
    convert_to_folder(raw, target, spec.source_format)
    raw.unlink()  # the converted folder is all load() reads; keeping both would double the cache
    return target


def convert_to_folder(ckpt: Path, target: Path, source_format: str = "s3prl") -> Path:
    """Convert a checkpoint into an audiorep model folder; the folder appears whole or not at all."""
    from .compat.s3prl import load_s3prl_checkpoint

    if source_format != "s3prl":
        raise CheckpointError(f"{ckpt}: unknown source format {source_format!r}")
    model, head = load_s3prl_checkpoint(ckpt, with_head=True)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, extra={"head": head} if head is not None else None)
    return target
