"""Spoken confirmation: the question a confirm-tier tool asks aloud, and what the answer means.

Only a clear yes approves. The whole answer must be one of a few yes phrases, compared the
way the wake phrase is (word by word, by letters and by sound), so "Yes." and "yeah" pass
but "yes, no", "yesterday" or a sentence that merely contains "yes" do not. Everything
else is a no: a no word, noise the guards reject, something else, or nothing at all.

The words and sentences are the home's language's (agent.languages: "ja"/"nein",
"sí"/"no", "oui"/"non"), English where the language has no row.
"""

from __future__ import annotations

from typing import Any

from agent.languages import ENGLISH, Language
from agent.skills.phrases import normalize
from agent.voice.wake import Wake, similarity

YES, NO = ENGLISH.yes, ENGLISH.no

# Which of the language's lines is said once the question is settled, by why. A yes says
# nothing: the tool's result, spoken as the turn's reply, is the answer.
ACKNOWLEDGE = {"yes": None, "no": "no", "unclear": "unclear", "silence": "silence", "cancelled": None}


def acknowledgement(reason: str, language: Language = ENGLISH) -> str | None:
    """What is said after the answer (by its reason), in `language`; None = nothing."""
    line = ACKNOWLEDGE[reason]
    return language.lines[line] if line else None


def spoken_question(tool: Any, arguments: dict, language: Language = ENGLISH) -> str:
    """The question put aloud: the tool's own wording if it has one, else a generic sentence.

    A tool gives its wording as a `confirm_question` attribute on its function, a template
    filled from the arguments ("{action} the {device}?"), or a dict of such templates by
    language ({"en": ..., "de": "{device} {action}?"}); values the language has words for
    ("lock" -> "abschließen") are said in it."""
    said = {k: "" if v is None else language.values.get(v, v) if isinstance(v, str) else v
            for k, v in arguments.items()}
    ask = f" {language.lines['say_yes_or_no']}"
    wording = getattr(getattr(tool, "function", None), "confirm_question", None)
    if isinstance(wording, dict):
        # A language without a row speaks English sentences, so it takes the English wording too.
        wording = wording.get(language.code) or (wording.get("en") if language.lines is ENGLISH.lines else None)
    if wording:
        try:
            asked = wording.format(**said)
        except (KeyError, IndexError, ValueError):
            asked = None  # a template naming an argument the call left out: say it plainly
        if asked:
            return _sentence(asked) + ask
    action = tool.name.replace("_", " ")
    values = [str(v) for v in said.values() if v not in (None, "")]
    return language.lines["ask"].format(what=action + (" " + ", ".join(values) if values else "")) + ask


def hear_answer(text: str, wake: Wake, threshold: float | None = None, language: Language = ENGLISH) -> str:
    """"yes", "no" or "unclear" for what was said in answer; a wake phrase before it is dropped."""
    woke = wake.split(text)
    said = normalize(woke.command if woke.woke else text).split()
    if not said:
        return "unclear"
    bar = wake.similarity if threshold is None else threshold
    yes, no = _closest(said, language.yes), _closest(said, language.no)
    if yes >= bar and no < yes:
        return "yes"
    return "no" if no >= bar else "unclear"


def _closest(said: list[str], phrases: tuple[str, ...]) -> float:
    return max(similarity(said, normalize(phrase).split()) for phrase in phrases)


def _sentence(text: str) -> str:
    """Whole words, the first letter upper case ("¿cerrar" -> "¿Cerrar"), ending in a mark."""
    text = " ".join(text.split())
    first = next((i for i, c in enumerate(text) if c.isalpha()), 0)
    text = text[:first] + text[first:first + 1].upper() + text[first + 1:]
    return text if text.endswith(("?", ".", "!")) else text + "?"
