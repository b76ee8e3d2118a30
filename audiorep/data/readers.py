"""Readers that turn real corpus trees into Utterance lists (and then manifests).

* LibriSpeech: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` + ``SPEAKER-CHAPTER.trans.txt``, optional
  ``converted_aligned_phones.txt`` frame labels.
* VoxCeleb1: ``{dev,test}/wav/id10001/VIDEO/00001.wav`` + the official ``iden_split.txt`` (1 train, 2 dev,
  3 test).
* IEMOCAP: see :mod:`audiorep.data.iemocap`.
* CMU-MOSI raw segments: one 16 kHz WAV per segment + a labels CSV (``video_id, clip_id, text, label, mode``,
  as MMSA's ``label.csv``).

Every reader takes ``on_error``: ``"raise"`` stops at the first inconsistency (a transcript line without
audio, a split entry whose file is missing, an unreadable header) with an error naming the file;
``"skip"`` leaves such entries out and returns them in ``skipped`` as ``(what, reason)`` pairs.
MMSA feature pickles are read by :mod:`audiorep.data.mmsa`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import audio_info
from ..errors import AudioError, ConfigError
from .manifest import Utterance


@dataclass
class ReadResult:
    """What a reader found: utterances per split, the frame-label file if any, and what it left out."""

    splits: dict[str, list[Utterance]] = field(default_factory=dict)  # split name -> utterances
    frame_labels: Path | None = None  # converted_aligned_phones.txt-style file found with the corpus
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or entry, reason)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _utterance(uid: str, path: Path, speaker: str, text: str, labels: dict | None, on_error: str,
               skipped: list) -> Utterance | None:
    """Build an Utterance from a file's header; None (recorded in skipped) or AudioError when unreadable."""
    try:
        frames, sr, _ch = audio_info(path)
        if frames <= 0:
            raise AudioError(f"{path}: the file holds no samples")
    except AudioError as exc:
        if on_error == "raise":
            raise
        skipped.append((str(path), str(exc)))
        return None
    return Utterance(uid, str(path.resolve()), frames, sr, speaker, text, dict(labels or {}))


def read_librispeech(root: str | os.PathLike, on_error: str = "raise",
                     subsets: dict[str, str] | None = None) -> ReadResult:
    """Read a LibriSpeech-layout tree (one subset such as ``train-clean-100``, or a folder of subsets).

    Each subset folder containing ``SPEAKER/CHAPTER`` becomes a split named after it (the root itself is
    split ``"all"`` when it holds speakers directly). ``subsets`` ({subset folder: split name}) reads only
    those subset folders of the root and names their splits; ConfigError when none of them is there.
    A ``converted_aligned_phones.txt`` in the root or its parent is returned as ``frame_labels``.
    Raises ConfigError when no transcripts are found.
    """
    _check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such LibriSpeech folder")
    res = ReadResult()
    if subsets is None:
        trans_files = sorted(root.rglob("*.trans.txt"))
    else:
        present = [s for s in subsets if (root / s).is_dir()]
        if not present:
            raise ConfigError(f"{root}: none of the LibriSpeech subsets {list(subsets)} is in this folder")
        trans_files = [tf for s in present for tf in sorted((root / s).rglob("*.trans.txt"))]
    if not trans_files:
        raise ConfigError(f"{root}: no *.trans.txt transcripts (expected SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt)")
    for tf in trans_files:
        chapter_dir = tf.parent
        speaker = chapter_dir.parent.name
        subset_dir = chapter_dir.parent.parent
        split = "all" if subset_dir.resolve() == root.resolve() else subset_dir.name
        if subsets is not None:
            split = subsets[subset_dir.relative_to(root).parts[0]]
        with open(tf, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                if not uid.startswith(f"{speaker}-"):
                    msg = f"{tf}:{lineno}: utterance {uid!r} does not belong to speaker folder {speaker!r}"
                    if on_error == "raise":
                        raise ConfigError(msg)
                    res.skipped.append((f"{tf}:{lineno}", msg))
                    continue
                audio = next((chapter_dir / f"{uid}{ext}" for ext in (".flac", ".wav")
                              if (chapter_dir / f"{uid}{ext}").is_file()), None)
                if audio is None:
                    msg = f"{tf}:{lineno}: no audio file {uid}.flac in {chapter_dir}"
                    if on_error == "raise":
                        raise AudioError(msg)
                    res.skipped.append((f"{tf}:{lineno}", msg))
                    continue
                u = _utterance(uid, audio, speaker, text.strip().lower(), None, on_error, res.skipped)
                if u is not None:
                    res.splits.setdefault(split, []).append(u)
    for cand in (root / "converted_aligned_phones.txt", root.parent / "converted_aligned_phones.txt"):
        if cand.is_file():
            res.frame_labels = cand
            break
    return res


VOX_SPLITS = {"1": "train", "2": "dev", "3": "test"}
VOX1_SPEAKERS = 1251  # SUPERB SID's output count: every VoxCeleb1 speaker, whatever the split holds


def _vox_speaker_index(speaker: str, where: str) -> int:
    """SUPERB SID's class of a VoxCeleb1 speaker: its number minus 10001 (id10001 -> 0 ... id11251 -> 1250)."""
    m = re.fullmatch(r"id(\d{5})", speaker)
    if m is None or not 0 <= int(m.group(1)) - 10001 < VOX1_SPEAKERS:
        raise ConfigError(f"{where}: speaker folder {speaker!r} is not a VoxCeleb1 speaker id (id10001 .. id11251)")
    return int(m.group(1)) - 10001


def read_voxceleb1(root: str | os.PathLike, split_file: str | os.PathLike | None = None,
                   on_error: str = "raise") -> ReadResult:
    """Read VoxCeleb1 for speaker identification with the official ``iden_split.txt``.

    ``root`` is the release folder: a file listed as ``id10001/VIDEO/00001.wav`` is looked up under
    ``root/dev/wav`` and ``root/test/wav`` (the two halves of the release, as SUPERB looks them up), then
    under any other ``root/*/wav``, ``root/wav`` and ``root`` itself. ``split_file`` defaults to
    ``root/iden_split.txt``; its lines are ``<1|2|3> id10001/VIDEO/00001.wav`` (train/dev/test). Without
    any split file, every ``id*/VIDEO/*.wav`` under those folders is returned as split ``"all"``.
    Speaker = the ``id1xxxx`` folder; ``labels["speaker_index"]`` = its number minus 10001, the class
    SUPERB's SID head (1,251 outputs) is trained on.
    """
    _check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such VoxCeleb1 folder")
    named = [root / "dev" / "wav", root / "test" / "wav"]
    others = [d for d in sorted(root.glob("*/wav")) if d not in named]
    audio_roots = [d for d in named + others + [root / "wav", root] if d.is_dir()]
    res = ReadResult()
    split_path = Path(split_file) if split_file is not None else root / "iden_split.txt"
    if split_file is not None and not split_path.is_file():
        raise ConfigError(f"{split_path}: no such split file")
    if split_path.is_file():
        entries = []
        with open(split_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[0] not in VOX_SPLITS or parts[1].count("/") != 2:
                    raise ConfigError(
                        f"{split_path}:{lineno}: expected '<1|2|3> id10001/VIDEO/00001.wav', got {line.strip()!r}"
                    )
                entries.append((VOX_SPLITS[parts[0]], parts[1], f"{split_path}:{lineno}"))
    else:
        seen: set[str] = set()
        entries = []
        for d in audio_roots:
            for p in sorted(d.glob("id*/*/*.wav")):
                rel = p.relative_to(d).as_posix()
                if rel not in seen:
                    seen.add(rel)
                    entries.append(("all", rel, str(p)))
        if not entries:
            raise ConfigError(f"{root}: no id*/VIDEO/*.wav files under dev/wav, test/wav, wav or the folder "
                              "itself, and no iden_split.txt")
    for split, rel, where in entries:
        path = next((d / rel for d in audio_roots if (d / rel).is_file()), None)
        if path is None:
            msg = f"{where}: {rel} listed in the split file does not exist under {root}/{{dev,test}}/wav"
            if on_error == "raise":
                raise AudioError(msg)
            res.skipped.append((where, msg))
            continue
        uid = rel[:-4].replace("/", "-") if rel.endswith(".wav") else rel.replace("/", "-")
        speaker = rel.split("/")[0]
        labels = {"speaker_index": _vox_speaker_index(speaker, where)}
        u = _utterance(uid, path, speaker, "", labels, on_error, res.skipped)
        if u is not None:
            res.splits.setdefault(split, []).append(u)
    return res


MOSI_MODES = {"train": "train", "valid": "dev", "dev": "dev", "test": "test"}


def read_mosi(audio_dir: str | os.PathLike, label_csv: str | os.PathLike, on_error: str = "raise") -> ReadResult:
    """Read CMU-MOSI (or MOSEI) raw segments with a labels CSV.

    The CSV needs columns ``video_id``, ``clip_id``, ``label`` (sentiment in [-3, 3]) and ``mode``
    (train/valid/test); ``text`` is kept as the transcript when present. The audio of a segment is
    ``audio_dir/VIDEO/CLIP.wav`` or ``audio_dir/VIDEO_CLIP.wav``. Speaker = video id (one speaker per video).
    Splits are named train/dev/test.
    """
    _check_on_error(on_error)
    audio_dir, label_csv = Path(audio_dir), Path(label_csv)
    if not audio_dir.is_dir():
        raise ConfigError(f"{audio_dir}: no such audio folder")
    if not label_csv.is_file():
        raise ConfigError(f"{label_csv}: no such labels CSV")
    res = ReadResult()
    with open(label_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"video_id", "clip_id", "label", "mode"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{label_csv}: missing column(s) {sorted(missing)}; has {reader.fieldnames}")
        for lineno, row in enumerate(reader, 2):
            where = f"{label_csv}:{lineno}"
            vid, clip = row["video_id"].strip(), row["clip_id"].strip()
            try:
                label = float(row["label"])
            except ValueError:
                raise ConfigError(f"{where}: label {row['label']!r} is not a number") from None
            if not math.isfinite(label) or not -3.0 <= label <= 3.0:
                raise ConfigError(f"{where}: label {label} outside the sentiment scale [-3, 3]")
            mode = row["mode"].strip().lower()
            if mode not in MOSI_MODES:
                raise ConfigError(f"{where}: mode {row['mode']!r} is not one of train/valid/test")
            cands = [audio_dir / vid / f"{clip}.wav", audio_dir / f"{vid}_{clip}.wav"]
            path = next((c for c in cands if c.is_file()), None)
            if path is None:
                msg = f"{where}: no audio for {vid}/{clip} (looked for {cands[0]} and {cands[1]})"
                if on_error == "raise":
                    raise AudioError(msg)
                res.skipped.append((where, msg))
                continue
            u = _utterance(f"{vid}_{clip}", path, vid, (row.get("text") or "").strip(), {"sentiment": label},
                           on_error, res.skipped)
            if u is not None:
                res.splits.setdefault(MOSI_MODES[mode], []).append(u)
    return res
