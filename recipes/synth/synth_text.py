"""Sentences with a known lexical polarity for the bundled corpus: templates over a small polarity lexicon.

Everything here is pure Python (no synthesizer), so the rule that makes the sentiment labels is importable
and testable (tests/data/test_synth.py puts this folder on sys.path). The sentiment of an utterance combines this lexical polarity with the prosodic *style* the
sentence is spoken in (see :func:`sentiment_score` and ``audiorep/data/synth/README.md``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# adjective -> polarity on roughly [-3, 3]; neutral words (0) keep a share of sentences without sentiment
ADJECTIVES: dict[str, float] = {
    "wonderful": 2.6, "fantastic": 2.8, "excellent": 2.5, "brilliant": 2.4, "delightful": 2.3,
    "great": 2.0, "lovely": 2.0, "cheerful": 1.7, "good": 1.5, "pleasant": 1.3, "nice": 1.2,
    "decent": 0.8, "fine": 0.6, "okay": 0.3,
    "ordinary": 0.0, "average": 0.0, "plain": 0.0, "quiet": 0.0, "long": 0.0,
    "slow": -0.6, "dull": -1.2, "messy": -1.2, "boring": -1.5, "bad": -1.5, "poor": -1.6,
    "annoying": -1.8, "disappointing": -2.0, "useless": -2.2, "awful": -2.6, "terrible": -2.6,
    "horrible": -2.8,
}
# degree words scale the adjective's polarity
INTENSIFIERS: dict[str, float] = {
    "": 1.0, "very ": 1.4, "really ": 1.35, "quite ": 1.15, "so ": 1.3, "extremely ": 1.6,
    "a bit ": 0.6, "somewhat ": 0.7, "rather ": 0.9,
}
SUBJECTS = [
    "the movie", "this phone", "my new job", "the weather", "the dinner", "our trip", "the concert",
    "his plan", "the hotel", "that book", "the service", "this song", "the meeting", "her garden",
    "the game", "the lecture", "the train ride", "the coffee", "the new office", "our neighbour",
    "the museum", "the beach", "this camera", "the party", "the interview", "the old bridge",
    "the bakery", "my sister's car", "the river walk", "the show", "the class", "the market",
]
VERBS = ["was", "is", "seemed", "felt", "looked", "sounded", "turned out"]
OPENERS = ["", "", "", "i think ", "honestly, ", "well, ", "to be fair, ", "in my view, ", "you know, "]
TAILS = ["", "", "", " today", " last night", " this morning", " again", " on sunday", " for once"]

NEGATED_WEIGHT = -0.6  # "not great" is mildly negative, "not awful" mildly positive: negation flips and damps
AND_WEIGHT = 0.5  # an "and" clause adds half of its own polarity
BUT_FIRST, BUT_SECOND = 0.3, 0.8  # after "but" the second clause dominates

# speaking styles: a prosodic cue that changes what the words mean (see sentiment_score)
STYLES = ("emphatic", "neutral", "flat")
STYLE_RATE = {"emphatic": 0.78, "neutral": 1.0, "flat": 1.32}  # duration stretch (>1 = slower)
STYLE_F0_RANGE = {"emphatic": 1.9, "neutral": 1.0, "flat": 0.3}  # multiplier on the voice's F0 std
STYLE_GAIN_DB = {"emphatic": 3.0, "neutral": 0.0, "flat": -3.0}  # level; features normalise it away


@dataclass
class Sentence:
    """A generated sentence and its lexical polarity."""

    text: str  # lower-case words as spoken
    polarity: float  # lexical polarity in [-3, 3] from the lexicon rule


def _clause(rng: random.Random, subject: str | None = None) -> tuple[str, float]:
    subj = subject or rng.choice(SUBJECTS)
    verb = rng.choice(VERBS)
    adj = rng.choice(list(ADJECTIVES))
    inten = rng.choice(list(INTENSIFIERS))
    pol = ADJECTIVES[adj] * INTENSIFIERS[inten]
    negate = ADJECTIVES[adj] != 0 and rng.random() < 0.18 and verb in ("was", "is")
    if negate:
        pol *= NEGATED_WEIGHT
        return f"{subj} {verb} not {inten}{adj}", pol
    return f"{subj} {verb} {inten}{adj}", pol


def make_sentence(rng: random.Random) -> Sentence:
    """One sentence: an opener, one or two clauses (joined by "and" or "but") and a tail."""
    first, p1 = _clause(rng)
    kind = rng.random()
    if kind < 0.55:
        text, pol = first, p1
    elif kind < 0.8:
        second, p2 = _clause(rng)
        text, pol = f"{first}, and {second}", p1 + AND_WEIGHT * p2
    else:
        second, p2 = _clause(rng)
        text, pol = f"{first}, but {second}", BUT_FIRST * p1 + BUT_SECOND * p2
    text = rng.choice(OPENERS) + text + rng.choice(TAILS)
    return Sentence(text=text, polarity=round(max(-3.0, min(3.0, pol)), 3))


def sentiment_score(polarity: float, style: str) -> float:
    """The label: lexical polarity ``L`` changed by the speaking style.

    * emphatic (fast, wide pitch range, louder): strengthens, ``clip(1.5 L, -3, 3)``
    * neutral: the words alone, ``L``
    * flat (slow, narrow pitch range, softer; read as sarcastic/resigned): flips and weakens, ``-0.5 L``

    With the three styles equally likely, the best a text-only model can do is predict ``E[y | L]`` and it
    gets the sign wrong on about a third of the polar sentences.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if polarity == 0:
        return 0.0  # avoids -0.0 in the files
    if style == "emphatic":
        y = 1.5 * polarity
    elif style == "neutral":
        y = polarity
    elif style == "flat":
        y = -0.5 * polarity
    else:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    return round(max(-3.0, min(3.0, y)), 3)
