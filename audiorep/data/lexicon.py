"""Pronunciation lexicons: LibriSpeech transcripts to phone sequences for SUPERB phoneme recognition (PR).

SUPERB's PR targets come from two g2p lexicons published in s3prl's repository,
``s3prl/downstream/ctc/lexicon/librispeech-lexicon-200k-g2p.txt`` and
``librispeech-lexicon-allothers-g2p.txt``. A line is ``WORD<TAB>PH PH ...`` (upper-case word, ARPAbet
phones with stress digits; any whitespace separates). Rules that decide the targets, kept as s3prl keeps
them: files are read in the order given, the first pronunciation of a word in file order wins, a word that
no file lists is an error (there is no unknown-word token), and no silence is put between words.

audiorep does not download the lexicons: a user fetches them once (see :data:`LEXICON_HELP`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ConfigError
from .manifest import Utterance

PR_SUBSETS = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test"}  # SUPERB PR's LibriSpeech splits
LEXICON_FILES = ("librispeech-lexicon-200k-g2p.txt", "librispeech-lexicon-allothers-g2p.txt")
LEXICON_URL = "https://github.com/s3prl/s3prl/tree/main/s3prl/downstream/ctc/lexicon"
LEXICON_HELP = (f"SUPERB PR needs the lexicons {' and '.join(LEXICON_FILES)} from {LEXICON_URL}: download both and "
                f"pass --lexicon {LEXICON_FILES[0]} --lexicon {LEXICON_FILES[1]} (in this order)")

_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
               "TH", "V", "W", "Y", "Z", "ZH")
# SUPERB PR's token set (71): silence, spoken noise, then ARPAbet in alphabetical order with every vowel in
# its three stress variants; a CTC head adds its own blank (and s3prl its pad/eos/unk) around these.
ARPABET_PHONES: tuple[str, ...] = ("SIL", "SPN") + tuple(sorted(
    [v + s for v in _VOWELS for s in "012"] + list(_CONSONANTS)))


def read_lexicon(paths: Sequence[str | os.PathLike], phones: Iterable[str] | None = ARPABET_PHONES
                 ) -> dict[str, list[str]]:
    """Read lexicon files in order into ``{WORD: [phone, ...]}``; the first pronunciation of a word wins.

    ``phones`` is the allowed phone set (None allows any token). Raises ConfigError naming the file (and line)
    for a missing or non-UTF-8 file, a line with a word but no phones, or a phone outside the set.
    """
    if not paths:
        raise ConfigError(LEXICON_HELP)
    allowed = None if phones is None else set(phones)
    lex: dict[str, list[str]] = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"{p}: no such lexicon file; {LEXICON_HELP}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: unreadable lexicon file ({exc})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            word, pron = parts[0], parts[1:]
            if not pron:
                raise ConfigError(f"{p}:{lineno}: word {word!r} has no phones (expected 'WORD<TAB>PH PH ...')")
            if allowed is not None:
                bad = [ph for ph in pron if ph not in allowed]
                if bad:
                    raise ConfigError(f"{p}:{lineno}: phone {bad[0]!r} of {word!r} is not an ARPAbet phone with "
                                      "stress digit (e.g. AH0, HH)")
            lex.setdefault(word, pron)
    if not lex:
        raise ConfigError(f"{', '.join(str(p) for p in paths)}: the lexicon holds no words")
    return lex


def words_to_phones(text: str, lexicon: dict[str, list[str]]) -> list[str]:
    """Phones of a transcript: each whitespace-separated word upper-cased and looked up; KeyError names the
    first word missing from the lexicon."""
    out: list[str] = []
    for word in text.upper().split():
        if word not in lexicon:
            raise KeyError(word)
        out.extend(lexicon[word])
    return out


def add_phone_labels(utts: Iterable[Utterance], lexicon_files: Sequence[str | os.PathLike],
                     lexicon: dict[str, list[str]] | None = None) -> None:
    """Set ``labels["phones"]`` of each utterance from its ``text`` through the lexicon files (in place).

    A word missing from every lexicon is a ConfigError naming the word, the utterance and the lexicon files.
    """
    lex = read_lexicon(lexicon_files) if lexicon is None else lexicon
    for u in utts:
        try:
            u.labels["phones"] = words_to_phones(u.text, lex)
        except KeyError as exc:
            files = ", ".join(str(p) for p in lexicon_files)
            raise ConfigError(f"{u.path}: word {exc.args[0]!r} of utterance {u.id!r} is in none of the lexicons "
                              f"({files})") from None
        if not u.labels["phones"]:
            raise ConfigError(f"{u.path}: utterance {u.id!r} has an empty transcript, so no phone targets")
