"""The wake phrase, fuzzy-matched at the start of a transcript, and spoken-form clean-up.

"Hey agent, turn on the lights" -> the command "turn on the lights". Whisper spells the same
sound several ways ("Hey, Agent.", "hay agent"), so the first words are compared by
similarity, not equality. Number words become digits ("two hundred" -> "200") because phrase
templates match numbers as digits.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from agent.skills.phrases import normalize


@dataclass(frozen=True)
class WakeResult:
    """Whether a wake phrase opened the transcript, and what follows it."""

    woke: bool
    command: str
    phrase: str | None = None
    score: float = 0.0


class Wake:
    """Finds one of the wake phrases at the start of a transcript."""

    def __init__(self, phrases: list[str], *, similarity: float = 0.75):
        self.phrases = [normalize(p) for p in phrases if normalize(p)]
        self.similarity = similarity

    def split(self, text: str) -> WakeResult:
        """The wake phrase (if any) and the command after it, in the transcript's own words."""
        words = text.split()
        plain = [normalize(w) for w in words]
        best = WakeResult(woke=False, command=text.strip())
        for phrase in self.phrases:
            n = len(phrase.split())
            for take in (n, n - 1, n + 1):  # Whisper may split or merge a word ("heya gent")
                heard = [w for w in plain[:take] if w]
                if take < 1 or len(plain) < take or not heard:
                    continue
                score = similarity(heard, phrase.split())
                if score >= self.similarity and score > best.score:
                    rest = " ".join(words[take:]).lstrip(" ,.!?;:-")
                    best = WakeResult(woke=True, command=rest, phrase=phrase, score=score)
        return best


def similarity(heard: list[str], phrase: list[str]) -> float:
    """How close the heard words are to a phrase's (0-1). Word by word when the counts agree (the weakest word decides), else the joined letters,
    held to a stricter bar: "the agent is" must not pass for "hey agent"."""
    if len(heard) == len(phrase):
        return min(max(_ratio(h, p), _ratio(_sound(h), _sound(p))) for h, p in zip(heard, phrase))
    joined = _ratio("".join(heard), "".join(phrase))
    return joined if joined >= 0.95 else 0.0


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _sound(word: str) -> str:
    """A crude sound key: the first letter and the consonants, so "hay" sounds like "hey"."""
    return word[:1] + re.sub(r"[aeiou]+", "", word[1:])


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_NUMBER_WORD = re.compile(r"\b(?:(?:%s|hundred|thousand|and|a)(?:[ -]|\b))+" % "|".join([*_UNITS, *_TENS]), re.I)


def spoken_numbers(text: str) -> str:
    """Number words as digits: "convert two hundred and fifty grams" -> "convert 250 grams"."""
    return _NUMBER_WORD.sub(_replace_number, text)


def _replace_number(match: re.Match) -> str:
    span = match.group(0)
    words = [w for w in re.split(r"[ -]+", span.strip().lower()) if w]
    # "a" and "and" only belong inside a number ("a hundred", "two hundred and five").
    lead, trail = [], []
    while words and words[0] in ("a", "and") and not (words[0] == "a" and words[1:2] in (["hundred"], ["thousand"])):
        lead.append(words.pop(0))
    while words and words[-1] in ("a", "and"):
        trail.insert(0, words.pop())
    if not words:
        return span
    total = current = 0
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total, current = total + max(current, 1) * 1000, 0
        elif w == "a":
            current += 0
    out = " ".join([*lead, str(total + current), *trail])
    return out + (" " if span.endswith((" ", "-")) else "")
