"""The data side of SUPERB's PR, SID and ER protocols: ER's folds, and the bundled corpus's SUPERB labels.

What a manifest carries for each protocol:

* PR: ``labels["phones"]``, the target phone sequence (LibriSpeech: ARPAbet with stress, from
  :mod:`audiorep.data.lexicon`; ``synth``: its ``phones.txt`` names without ``sil``); splits train/dev/test.
* SID: the ``speaker`` field; splits train/dev/test (VoxCeleb1 rows add ``labels["speaker_index"]``).
* ER: a class label and ``labels["session"]`` (1..5); one manifest in SUPERB's order, folds from
  :func:`er_folds`. IEMOCAP's class label is ``emotion`` (:data:`ER_CLASSES`); ``synth``'s is ``style``
  (:data:`SYNTH_STYLE_CLASSES`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from .iemocap import ER_CLASSES, SESSIONS
from .labels import read_frame_labels, read_label_names
from .manifest import Utterance

SYNTH_STYLE_CLASSES = ("neutral", "emphatic", "flat")  # synth's emotion-like class: the prosodic style
SYNTH_SILENCE = "sil"  # dropped from synth's phone sequences: LibriSpeech PR targets hold no silence either
ER_VALID_RATIO = 0.2  # SUPERB ER (emotion/config.yaml valid_ratio): share of the training sessions held out as dev
ER_SEED = 0  # SUPERB ER seeds torch's global generator with 0 right before its random_split


def er_folds(utterances: Sequence[Utterance], *, label_key: str = "emotion",
             classes: Sequence[str] = ER_CLASSES, sessions: Sequence[int] = SESSIONS,
             valid_ratio: float = ER_VALID_RATIO, seed: int = ER_SEED) -> list[dict[str, list[Utterance]]]:
    """SUPERB ER's leave-one-session-out folds: fold ``i`` tests ``sessions[i]``.

    Each fold is ``{"train", "dev", "test"}``. Test = the held-out session's utterances in list order. The
    other sessions' utterances, in list order, are split as s3prl splits them: ``int((1 - valid_ratio) * n)``
    go to train, drawn by ``torch.randperm(n)`` from a generator seeded with ``seed`` (what
    ``torch.manual_seed(0)`` + ``random_split`` draws), in the permutation's order; the rest are dev. The
    global torch RNG is not touched. So the list order must be SUPERB's (as :func:`read_iemocap` writes it).

    Raises ConfigError naming the utterance for a missing/unknown class label or session, and naming the
    session when one has no utterances (a fold without a test set).
    """
    if not (isinstance(valid_ratio, (int, float)) and math.isfinite(valid_ratio) and 0 <= valid_ratio < 1):
        raise ConfigError(f"er_folds: valid_ratio must be a fraction in [0, 1), got {valid_ratio!r}")
    by_session: dict[int, list[int]] = {s: [] for s in sessions}
    for i, u in enumerate(utterances):
        label, session = u.labels.get(label_key), u.labels.get("session")
        if label not in classes:
            raise ConfigError(f"{u.path}: utterance {u.id!r} has labels[{label_key!r}] = {label!r}, not one of "
                              f"{', '.join(classes)}")
        if isinstance(session, bool) or not isinstance(session, int) or session not in by_session:
            raise ConfigError(f"{u.path}: utterance {u.id!r} has labels['session'] = {session!r}, not one of "
                              f"{list(sessions)}")
        by_session[session].append(i)
    folds = []
    for s in sessions:
        if not by_session[s]:
            raise ConfigError(f"er_folds: session {s} has no utterances, so its fold has no test set")
        rest = [u for u in utterances if u.labels["session"] != s]
        n_train = int((1 - valid_ratio) * len(rest))
        perm = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed)).tolist()
        folds.append({
            "train": [rest[i] for i in perm[:n_train]],
            "dev": [rest[i] for i in perm[n_train:]],
            "test": [utterances[i] for i in by_session[s]],
        })
    return folds


def collapse_frame_phones(frames: Sequence[int], names: Sequence[str], drop: str | None = SYNTH_SILENCE) -> list[str]:
    """A phone sequence from 10 ms frame classes: runs of one class become one phone, then ``drop`` goes.

    Merging runs before dropping silence keeps ``t sil t`` as two phones. Two identical phones with no
    frame between them cannot be told apart from one long phone and become one.
    """
    out: list[str] = []
    prev = None
    for c in frames:
        if c != prev:
            out.append(names[c])
            prev = c
    return [p for p in out if p != drop]


def synth_superb_labels(root: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """SUPERB labels of the bundled corpus (or a corpus folder made by its generator): ``{id: {"phones",
    "session"}}``.

    ``phones`` = the frame alignment collapsed by :func:`collapse_frame_phones` (``sil`` dropped).
    ``session`` = the speaker's variant index 1..5 from ``corpus.json``: every base voice is spoken in the
    same 5 (speed, pitch, rate) variants, so holding out one session holds out one variant of every voice,
    as an IEMOCAP session holds out its own speakers.
    """
    from .corpus import SYNTH_ROOT

    root = Path(root) if root is not None else SYNTH_ROOT
    meta_path = root / "corpus.json"
    try:
        speakers = json.loads(meta_path.read_text(encoding="utf-8"))["speakers"]
        variants: list[tuple] = []
        session_of: dict[str, int] = {}
        for s in speakers:
            key = (s["speed"], s["pitch_cents"], s["rate"])
            if key not in variants:
                variants.append(key)
            session_of[s["name"]] = variants.index(key) + 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{meta_path}: no readable speaker list ({exc})") from None
    if len(variants) != len(SESSIONS):
        raise ConfigError(f"{meta_path}: {len(variants)} speaker variants, expected {len(SESSIONS)} (one per session)")
    names = read_label_names(root / "phones.txt")
    frames = read_frame_labels(root / "converted_aligned_phones.txt", num_classes=len(names))
    out = {}
    for uid, seq in frames.items():
        spk = uid.split("-")[0]
        if spk not in session_of:
            raise ConfigError(f"{root / 'converted_aligned_phones.txt'}: utterance {uid!r} of unknown speaker {spk!r}")
        out[uid] = {"phones": collapse_frame_phones(seq.tolist(), names), "session": session_of[spk]}
    return out
