"""Spoken confirmation: the question a confirm-tier tool asks aloud, and what the answer means.

Only a clear yes approves. The whole answer must be one of a few yes phrases, compared the
way the wake phrase is (word by word, by letters and by sound), so "Yes." and "yeah" pass
but "yes, no", "yesterday" or a sentence that merely contains "yes" do not. Everything
else is a no: a no word, noise the guards reject, something else, or nothing at all.
"""

from __future__ import annotations

from typing import Any

from agent.skills.phrases import normalize
from agent.voice.wake import Wake, similarity

# Kept small on purpose: each phrase is a way for a misheard word to unlock a door.
YES = ("yes", "yeah", "yep", "yup", "sure", "okay", "do it", "go ahead", "confirm", "yes please",
       "yes do it", "yes go ahead")
NO = ("no", "nope", "nah", "no thanks", "no thank you", "dont", "do not", "cancel", "stop", "never mind",
      "not now", "leave it")

# What is said once the question is settled, by why. A yes says nothing: the tool's result,
# spoken as the turn's reply, is the answer.
ACKNOWLEDGE = {
    "yes": None,
    "no": "Okay, I won't.",
    "unclear": "I did not hear a yes, so I won't.",
    "silence": "No answer, so I won't.",
    "cancelled": None,
}


def spoken_question(tool: Any, arguments: dict) -> str:
    """The question put aloud: the tool's own wording if it has one, else a generic sentence.

    A tool gives its wording as a `confirm_question` attribute on its function, a template
    filled from the arguments ("{action} the {device}?")."""
    wording = getattr(getattr(tool, "function", None), "confirm_question", None)
    if wording:
        try:
            asked = wording.format(**{k: "" if v is None else v for k, v in arguments.items()})
        except (KeyError, IndexError, ValueError):
            asked = None  # a template naming an argument the call left out: say it plainly
        if asked:
            return f"{_sentence(asked)} Say yes or no."
    action = tool.name.replace("_", " ")
    values = [str(v) for v in arguments.values() if v not in (None, "")]
    return f"Should I {action}{' ' + ', '.join(values) if values else ''}? Say yes or no."


def hear_answer(text: str, wake: Wake, threshold: float | None = None) -> str:
    """"yes", "no" or "unclear" for what was said in answer; a wake phrase before it is dropped."""
    woke = wake.split(text)
    said = normalize(woke.command if woke.woke else text).split()
    if not said:
        return "unclear"
    bar = wake.similarity if threshold is None else threshold
    if _closest(said, YES) >= bar and _closest(said, NO) < _closest(said, YES):
        return "yes"
    return "no" if _closest(said, NO) >= bar else "unclear"


def _closest(said: list[str], phrases: tuple[str, ...]) -> float:
    return max(similarity(said, phrase.split()) for phrase in phrases)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    text = text[:1].upper() + text[1:]
    return text if text.endswith(("?", ".", "!")) else text + "?"
