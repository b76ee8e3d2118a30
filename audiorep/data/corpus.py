"""Corpora by name or folder: the bundled ``synth`` corpus and any folder of manifests look the same.

A corpus folder holds JSON-lines manifests named by split (``train.jsonl``, ``dev.jsonl``, ...), and
optionally ``converted_aligned_phones.txt`` (frame labels) with ``phones.txt`` (class names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from .labels import read_label_names
from .manifest import Utterance, read_manifest

SYNTH_ROOT = Path(__file__).resolve().parent / "synth"
_BUNDLED = {"synth": SYNTH_ROOT}
FRAME_LABEL_FILE = "converted_aligned_phones.txt"
LABEL_NAMES_FILE = "phones.txt"


@dataclass
class Corpus:
    """A set of split manifests with optional frame labels; build it with :func:`get_corpus`."""

    name: str  # "synth" or the folder/file it came from
    root: Path  # folder the manifests live in
    manifests: dict[str, Path] = field(default_factory=dict)  # split name -> manifest file
    frame_labels: Path | None = None  # converted_aligned_phones.txt-style file, if any
    label_names: Path | None = None  # phones.txt, if any

    @property
    def splits(self) -> list[str]:
        return list(self.manifests)

    def manifest(self, split: str) -> list[Utterance]:
        """The Utterances of one split; ConfigError listing the splits when it does not exist."""
        if split not in self.manifests:
            hint = ""
            if Path(self.name).suffix == ".jsonl":
                hint = (f" (one manifest file is one split, named after the file; for train/dev/test pass the "
                        f"folder holding {split}.jsonl and its sibling manifests)")
            raise ConfigError(f"corpus {self.name!r} has no split {split!r}; it has {self.splits}{hint}")
        return read_manifest(self.manifests[split])

    def utterances(self) -> list[Utterance]:
        """Every distinct utterance over all splits (split families such as train/dev/test and
        spk_train/spk_dev/spk_test cover the same files), in first-seen order."""
        seen: dict[str, Utterance] = {}
        for split in self.manifests:
            for u in self.manifest(split):
                seen.setdefault(u.id, u)
        return list(seen.values())

    def phone_names(self) -> list[str]:
        """Class names of the frame labels; ConfigError when the corpus has none."""
        if self.label_names is None:
            raise ConfigError(f"corpus {self.name!r} has no {LABEL_NAMES_FILE}")
        return read_label_names(self.label_names)

    def dataset(self, split: str, *, phones: bool = False, **kwargs: Any):
        """An :class:`~audiorep.data.dataset.AudioDataset` over one split; ``phones=True`` adds frame labels."""
        from .dataset import AudioDataset

        if phones:
            if self.frame_labels is None:
                raise ConfigError(f"corpus {self.name!r} has no {FRAME_LABEL_FILE}")
            kwargs.setdefault("frame_labels", self.frame_labels)
        return AudioDataset(self.manifests[split] if split in self.manifests else self.manifest(split), **kwargs)

    def info(self) -> dict[str, Any]:
        """Counts for ``audiorep data info``: speakers, utterances, hours, phone_classes, splits, size."""
        utts = self.utterances()
        out: dict[str, Any] = {
            "name": self.name,
            "root": str(self.root),
            "speakers": len({u.speaker for u in utts}),
            "utterances": len(utts),
            "hours": round(sum(u.duration for u in utts) / 3600, 4),
            "phone_classes": len(self.phone_names()) if self.label_names is not None else 0,
            "sample_rates": ",".join(str(r) for r in sorted({u.sample_rate for u in utts})),
        }
        for split, path in self.manifests.items():
            out[f"split.{split}"] = sum(1 for _ in read_manifest(path))
        out["size_mb"] = round(_listed_bytes(utts, self.manifests.values()) / 1e6, 2)
        return out


def _listed_bytes(utts: list[Utterance], manifests: Iterable[Path]) -> int:
    """Bytes of the audio files the manifests list, and of the manifests: the corpus, not whatever else shares
    its folder (walking that can take for ever and trips on any dangling link). Unreadable files count 0."""
    total = 0
    for path in {u.path for u in utts} | {str(p) for p in manifests}:
        try:
            total += os.stat(path).st_size
        except OSError:
            pass
    return total


def list_corpora() -> list[str]:
    """Names of the corpora shipped with the package (whose files are present)."""
    return [name for name, root in _BUNDLED.items() if any(root.glob("*.jsonl"))]


def get_corpus(name_or_path: str | os.PathLike) -> Corpus:
    """Resolve ``"synth"`` (bundled), a folder of ``*.jsonl`` manifests, or one manifest file into a Corpus."""
    key = os.fspath(name_or_path)
    if key in _BUNDLED:
        root = _BUNDLED[key]
        if not any(root.glob("*.jsonl")):
            raise ConfigError(
                f"bundled corpus {key!r} is missing from {root}; reinstall audiorep or regenerate it with "
                "recipes/make_synth_corpus.sh"
            )
        return _from_folder(root, key)
    path = Path(key)
    if path.is_dir():
        return _from_folder(path, key)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise ConfigError(f"{path}: expected a .jsonl manifest or a folder of them")
        root = path.parent
        return Corpus(
            name=key,
            root=root,
            manifests={path.stem: path},
            frame_labels=root / FRAME_LABEL_FILE if (root / FRAME_LABEL_FILE).is_file() else None,
            label_names=root / LABEL_NAMES_FILE if (root / LABEL_NAMES_FILE).is_file() else None,
        )
    raise ConfigError(
        f"unknown corpus {key!r}: not a bundled corpus ({sorted(_BUNDLED)}) nor an existing folder/manifest"
    )


def _from_folder(root: Path, name: str) -> Corpus:
    manifests = {p.stem: p for p in sorted(root.glob("*.jsonl"))}
    if not manifests:
        raise ConfigError(f"{root}: no *.jsonl manifests in this folder")
    order = ["train", "dev", "test", "spk_train", "spk_dev", "spk_test"]
    ordered = {k: manifests[k] for k in order if k in manifests}
    ordered.update({k: v for k, v in manifests.items() if k not in ordered})
    fl = root / FRAME_LABEL_FILE
    ln = root / LABEL_NAMES_FILE
    return Corpus(
        name=name,
        root=root,
        manifests=ordered,
        frame_labels=fl if fl.is_file() else None,
        label_names=ln if ln.is_file() else None,
    )
