"""IEMOCAP for SUPERB emotion recognition (ER): the release tree, or s3prl's meta-data lists, to one manifest.

The release holds ``Session{1..5}/dialog/EmoEvaluation/*.txt`` (a label line starts with ``[``:
``[start - end]<TAB>TURN_NAME<TAB>emotion<TAB>[V, A, D]``) and the turns' audio as
``Session{k}/sentences/wav/<dialog>/<TURN_NAME>.wav``. SUPERB keeps the turns labelled neu, hap, ang, sad
and exc, renames exc to hap, and drops every other label and every labelled turn without a wav.

Row order matters: SUPERB draws its dev set with a seeded random split over the list order (see
:func:`audiorep.data.superb.er_folds`). The reader lists Session1..5, in each the label files in sorted
name order, in each file its lines in order. s3prl's own preprocessing lists the label files in
``os.listdir`` order, which depends on the file system; the figures SUPERB reports come from the lists it
ships (``s3prl/downstream/emotion/meta_data/Session{1..5}/{train,test}_meta_data.json``). Pass that folder
as ``meta_data`` to take the utterances and their order from those lists exactly.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import AudioError, ConfigError
from .manifest import Utterance
from .readers import ReadResult, _check_on_error, _utterance

ER_CLASSES = ("neu", "hap", "ang", "sad")  # SUPERB ER's classes, in its class-index order 0..3
ER_RENAME = {"exc": "hap"}  # excited is counted as happy
# every label the IEMOCAP evaluators use (fru frustrated, sur surprised, fea fear, oth other, dis disgust,
# xxx no agreement); a label outside this set means the file is not an IEMOCAP EmoEvaluation file
IEMOCAP_LABELS = ("neu", "hap", "ang", "sad", "exc", "fru", "sur", "fea", "oth", "dis", "xxx")
SESSIONS = (1, 2, 3, 4, 5)
_SESSION_DIR = re.compile(r"Session(\d+)")


def _session_of(name: str, where: str) -> int:
    m = _SESSION_DIR.fullmatch(name)
    if m is None or int(m.group(1)) not in SESSIONS:
        raise ConfigError(f"{where}: {name!r} is not one of the IEMOCAP sessions Session1 .. Session5")
    return int(m.group(1))


def read_iemocap(root: str | os.PathLike, meta_data: str | os.PathLike | None = None,
                 on_error: str = "raise") -> ReadResult:
    """Read IEMOCAP into one split ``"all"`` with ``labels = {"emotion": ..., "session": k}``, in SUPERB's order.

    ``meta_data``: s3prl's ``meta_data`` folder; its ``Session{k}/test_meta_data.json`` lists (k = 1..5, in
    that order) give the utterances. Speaker = the turn's ``SesNNG`` prefix (session + gender). Labelled
    turns dropped by SUPERB's rules are listed in ``skipped``. Raises ConfigError naming the file for a
    tree that is not an IEMOCAP release, an unreadable or malformed label file, a label IEMOCAP does not
    use, and a session left without utterances.
    """
    _check_on_error(on_error)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such IEMOCAP folder")
    if meta_data is not None:
        return _from_meta_data(root, Path(meta_data), on_error)
    sessions = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("Session"))
    if not sessions:
        raise ConfigError(f"{root}: not an IEMOCAP release tree (no Session1 .. Session5 folders with "
                          "dialog/EmoEvaluation/*.txt)")
    res = ReadResult()
    out: list[Utterance] = []
    for sdir in sessions:
        session = _session_of(sdir.name, str(sdir))
        label_dir, wav_dir = sdir / "dialog" / "EmoEvaluation", sdir / "sentences" / "wav"
        for d in (label_dir, wav_dir):
            if not d.is_dir():
                raise ConfigError(f"{d}: missing; an IEMOCAP session holds dialog/EmoEvaluation and sentences/wav")
        wavs = {p.stem: p for p in sorted(wav_dir.rglob("*.wav")) if not p.name.startswith(".")}
        before = len(out)
        for lf in sorted(p for p in label_dir.iterdir() if p.suffix == ".txt" and p.is_file()):
            for lineno, turn, emotion in _label_lines(lf):
                where = f"{lf}:{lineno}"
                if emotion not in IEMOCAP_LABELS:
                    raise ConfigError(f"{where}: emotion {emotion!r} of {turn} is not an IEMOCAP label "
                                      f"({', '.join(IEMOCAP_LABELS)})")
                emotion = ER_RENAME.get(emotion, emotion)
                if emotion not in ER_CLASSES:
                    continue
                if turn not in wavs:
                    res.skipped.append((where, f"{where}: no wav for labelled turn {turn} under {wav_dir}"))
                    continue
                u = _utterance(turn, wavs[turn], turn.split("_")[0], "", {"emotion": emotion, "session": session},
                               on_error, res.skipped)
                if u is not None:
                    out.append(u)
        if len(out) == before:
            raise ConfigError(f"{label_dir}: session {session} has no utterance labelled "
                              f"{'/'.join(ER_CLASSES)}/exc with a wav")
    res.splits["all"] = out
    return res


def _label_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, turn name, emotion) of each label line (one starting with ``[``) of an EmoEvaluation file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable EmoEvaluation file ({exc})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("["):
            continue
        fields = [f for f in line.split("\t") if f]
        if len(fields) < 3:
            raise ConfigError(f"{path}:{lineno}: expected '[start - end]<TAB>TURN<TAB>emotion<TAB>[V, A, D]', "
                              f"got {line.strip()!r}")
        rows.append((lineno, fields[1].strip(), fields[2].strip()))
    return rows


def _read_meta(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such meta-data file (expected s3prl's emotion/meta_data/Session{{1..5}}/)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["meta_data"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("path"), str)
                                                 and isinstance(r.get("label"), str) for r in rows):
            raise ValueError("'meta_data' must be a list of {path, label, speaker} objects")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not an s3prl emotion meta-data file ({exc})") from None
    return rows


def _from_meta_data(root: Path, meta_dir: Path, on_error: str) -> ReadResult:
    """Utterances of s3prl's meta-data lists: Session1..5 test lists in order, which the train lists must agree with."""
    if not meta_dir.is_dir():
        raise ConfigError(f"{meta_dir}: no such meta-data folder")
    tests = {k: _read_meta(meta_dir / f"Session{k}" / "test_meta_data.json") for k in SESSIONS}
    for k in SESSIONS:  # one manifest can only stand for the folds when every train list is the others' tests
        train_path = meta_dir / f"Session{k}" / "train_meta_data.json"
        if train_path.is_file():
            want = [r["path"] for j in SESSIONS if j != k for r in tests[j]]
            if [r["path"] for r in _read_meta(train_path)] != want:
                raise ConfigError(f"{train_path}: does not list the other sessions' test utterances in order; "
                                  "these folds cannot be written as one manifest")
    res = ReadResult()
    out: list[Utterance] = []
    for k in SESSIONS:
        path = meta_dir / f"Session{k}" / "test_meta_data.json"
        if not tests[k]:
            raise ConfigError(f"{path}: session {k} lists no utterances")
        for i, row in enumerate(tests[k]):
            where = f"{path}: meta_data[{i}]"
            if row["label"] not in ER_CLASSES:
                raise ConfigError(f"{where}: label {row['label']!r} is not one of {', '.join(ER_CLASSES)}")
            rel = Path(row["path"])
            if rel.is_absolute() or ".." in rel.parts or _session_of(rel.parts[0], where) != k:
                raise ConfigError(f"{where}: path {row['path']!r} is not under Session{k}/")
            wav = root / rel
            if not wav.is_file():
                msg = f"{where}: {wav} does not exist"
                if on_error == "raise":
                    raise AudioError(msg)
                res.skipped.append((where, msg))
                continue
            u = _utterance(rel.stem, wav, rel.stem.split("_")[0], "", {"emotion": row["label"], "session": k},
                           on_error, res.skipped)
            if u is not None:
                out.append(u)
    res.splits["all"] = out
    return res
