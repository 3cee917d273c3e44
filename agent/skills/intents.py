"""The fast phrase path: common commands answered by running a tool directly, without the LLM.

Skills declare phrase templates (agent.skills.phrases). They compile once into an `IntentMatcher`;
`match(text)` finds the template a sentence fits, fills the tool's arguments from its slots
and validates them against the tool's schema. A sentence that fits nothing (or whose values
the tool refuses) goes to the model as usual. `answer_intent()` runs the tool and yields the
same step events as a turn, so front ends cannot tell the two paths apart.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from agent.actions import Action, Approve, Executor
from agent.events import Note, ReplyDone, StepEvent, TextDelta, ToolFinished, TurnStats
from agent.skills.phrases import PhraseSpec, fill, fixed_words, normalize, parse_template, references, slots_in
from agent.tools import ToolArgumentError, ToolContext, ToolRegistry

log = logging.getLogger(__name__)

# Said around a command, never part of it. Leading ones are stripped repeatedly, so
# "hey, could you please ..." loses all three.
LEADING_FILLERS = (
    "hey", "hi", "hello", "ok", "okay", "please", "kindly", "could you", "can you", "would you",
    "will you", "would you mind", "i want you to", "id like you to",
)
TRAILING_FILLERS = ("please", "thanks", "thank you", "for me")
# Commands are short; a long text is a conversation, and it keeps regexes cheap.
MAX_WORDS = 40
_PATTERNS = {"text": r"\S+(?: \S+)*?", "number": r"\d+(?:[./]\d+)?"}


@dataclass(frozen=True)
class IntentMatch:
    """A sentence that fits a phrase: the tool to run, its validated arguments, the reply."""

    text: str
    tool: str
    arguments: dict
    reply: str | None
    template: str
    skill: str
    slots: dict[str, Any]
    why: str
    # Renders the reply from the tool's outcome (the home's language); None: `reply` in English.
    render: Callable[[ToolFinished], str] | None = None


@dataclass
class _Entry:
    """One compiled template."""

    regex: re.Pattern
    needed: frozenset[str]
    template: str
    skill: str
    phrase: PhraseSpec
    choices: dict[str, dict[str, str]]  # slot -> {spoken form: value}
    numbers: frozenset[str]
    order: int


class IntentMatcher:
    """All enabled phrases, compiled once; `match()` is the per-sentence call."""

    def __init__(self, registry: ToolRegistry, *, fillers: Iterable[str] = ()):
        self.registry = registry
        self.problems: list[str] = []
        self._index: dict[str, list[_Entry]] = {}  # rarest fixed word -> templates
        self._always: list[_Entry] = []  # templates without a fixed word
        self._count = 0
        self.language: Any = None  # HassPhrases: the sentences of a language other than English
        lead = sorted({*LEADING_FILLERS, *(normalize(f) for f in fillers)} - {""}, key=len, reverse=True)
        trail = sorted(TRAILING_FILLERS, key=len, reverse=True)
        self._leading = re.compile(rf"^(?:(?:{'|'.join(map(re.escape, lead))}) )+")
        self._trailing = re.compile(rf"(?: (?:{'|'.join(map(re.escape, trail))}))+$")

    @classmethod
    def from_skills(cls, skillset: Any, registry: ToolRegistry, slot_values: dict[str, list[str]] | None = None,
                    *, fillers: Iterable[str] = (), language: str = "en", home: Any = None) -> IntentMatcher:
        """Compile the phrases of every enabled skill; slot_values fill slots no skill defines.

        For a `language` other than English the fast path speaks Home Assistant's sentences for
        it and the skills' `sentences:` in it (agent.skills.hass_phrases), with `home` (a
        HomeLists) naming the devices, rooms and floors; the skills' English phrases are off.
        A language without HA sentences keeps the English phrases, with a problem saying so.
        """
        matcher = cls(registry, fillers=fillers)
        if language.split("-")[0].lower() != "en":
            from agent.skills.hass_actions import HomeLists
            from agent.skills.hass_phrases import HassPhrases, LanguageNotSupportedError

            try:
                matcher.language = HassPhrases(language, registry, home or HomeLists(), skillset.enabled(),
                                               fillers=fillers)
                matcher.problems.extend(matcher.language.problems)
                return matcher
            except LanguageNotSupportedError as exc:
                matcher.problems.append(f"{exc}: the fast path keeps the English phrases")
        entries = []
        for skill in skillset.enabled():
            slots = _Slots({**{k: list(v) for k, v in (slot_values or {}).items()}, **skill.slots})
            for phrase in skill.phrases:
                for template in phrase.template:
                    entry = matcher._compile(template, phrase, skill.name, slots, len(entries))
                    if entry is not None:
                        entries.append(entry)
        matcher._build_index(entries)
        return matcher

    def __len__(self) -> int:
        return self._count if self.language is None else len(self.language)

    def _compile(self, template: str, phrase: PhraseSpec, skill: str, slots: _Slots, order: int) -> _Entry | None:
        """One template as a regex over normalized text; None (and a problem) if it cannot run."""
        where = f"skill {skill}: phrase {template!r}"
        if self.registry.get(phrase.tool) is None:
            self.problems.append(f"{where}: there is no tool named {phrase.tool!r}")
            return None
        nodes = parse_template(template)
        names = slots_in(nodes)
        undefined = sorted(names - set(slots.specs))
        if undefined:
            self.problems.append(f"{where}: no values for slot {{{undefined[0]}}} (add it under slots:)")
            return None
        first, last = " ".join(_edge_words(nodes)), " ".join(_edge_words(nodes[::-1])[::-1])
        if self._leading.match(first + " ") or self._trailing.search(" " + last):
            self.problems.append(f"{where}: starts or ends with a filler word, which is never matched")
            return None
        choices = {name: slots.choices(name) for name in names if slots.choices(name) is not None}
        numbers = frozenset(name for name in names if slots.specs[name] == "number")
        regex = re.compile(_render(nodes, slots.pattern))
        return _Entry(regex, fixed_words(nodes), template, skill, phrase, choices, numbers, order)

    def _build_index(self, entries: list[_Entry]) -> None:
        """File each template under its rarest fixed word, so a sentence tries only a few."""
        counts: dict[str, int] = {}
        for entry in entries:
            for word in entry.needed:
                counts[word] = counts.get(word, 0) + 1
        for entry in entries:
            if entry.needed:
                key = min(entry.needed, key=lambda w: (counts[w], w))
                self._index.setdefault(key, []).append(entry)
            else:
                self._always.append(entry)
        self._count = len(entries)

    def vocabulary(self, limit: int = 24) -> list[str]:
        """The home's own words the phrases listen for (device names, then rooms), to bias
        speech recognition toward names it cannot know. Only those: measured on tiny.en with
        espeak-ng speech, a prompt listing the kitchen skill's 60 unit and ingredient words
        made it drop small words ("convert 400 fahrenheit celsius") and miss more commands
        than no list at all, and every prompt word costs decoding time."""
        if self.language is not None:
            return self.language.vocabulary()[:limit]
        entries = sorted({id(e): e for es in [*self._index.values(), self._always] for e in es}.values(),
                         key=lambda e: e.order)
        words: dict[str, None] = {}
        for slot in ("device", "room"):
            for entry in entries:
                words.update(dict.fromkeys(f for f in entry.choices.get(slot, {}) if len(f) > 2))
        return list(words)[:limit]

    def clean(self, text: str) -> str:
        """What is matched: normalized text without fillers such as "please" or "could you"
        (for another language, its own clean-up: case, punctuation, "bitte")."""
        if self.language is not None:
            return self.language.clean(text)
        text = normalize(text)
        text = self._leading.sub("", text + " ").strip()
        return self._trailing.sub("", " " + text).strip()

    def match(self, text: str) -> IntentMatch | None:
        """The best phrase this text fits, with validated arguments; None means ask the model."""
        return self._search(text)[0]

    def explain(self, text: str) -> str:
        """Which path answers this text and why, in one line (for `agentd ask --explain`)."""
        found, reasons = self._search(text)
        if found is not None:
            return f"phrase path: {found.why}"
        detail = "; ".join(reasons[:3]) or f"no phrase fits {self.clean(text)!r} ({len(self)} templates)"
        return f"model: {detail}"

    def _search(self, text: str) -> tuple[IntentMatch | None, list[str]]:
        if self.language is not None:
            return self.language.search(text)
        said = self.clean(text)
        words = said.split()
        if not words or len(words) > MAX_WORDS:
            return None, []
        present = set(words)
        candidates = list(self._always)
        for word in present:
            candidates.extend(self._index.get(word, ()))
        best, best_rank, reasons = None, None, []
        for entry in candidates:
            if not entry.needed <= present:
                continue
            found = entry.regex.fullmatch(said + " ")
            if found is None:
                continue
            match, problem = self._fit(entry, text, said, found)
            if match is None:
                reasons.append(problem)
                continue
            # The fit with the most fixed wording (least slot text) wins; then the first declared.
            rank = (len(said) - sum(len(v) for v in found.groupdict().values() if v), -entry.order)
            if best_rank is None or rank > best_rank:
                best, best_rank = match, rank
        return best, reasons

    def _fit(self, entry: _Entry, text: str, said: str, found: re.Match) -> tuple[IntentMatch | None, str]:
        """Slot values -> tool arguments, validated against the tool's schema."""
        values = {}
        for name, spoken in found.groupdict().items():
            if spoken is None:
                continue  # an optional slot that was not said
            if name in entry.choices:
                values[name] = entry.choices[name][spoken]
            elif name in entry.numbers:
                values[name] = _number(spoken)
            else:
                values[name] = spoken
        phrase = entry.phrase
        arguments = {}
        for key, value in phrase.args.items():
            filled = fill(value, values) if isinstance(value, str) else value
            if filled is not None:
                arguments[key] = values[next(iter(references(value)))] if _whole_slot(value) else filled
        tool = self.registry.get(phrase.tool)
        try:
            arguments = tool.validate(arguments)
        except ToolArgumentError as exc:
            return None, f"{entry.template!r} fits, but {exc}"
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        why = f"{entry.template!r} (skill {entry.skill}) fits {said!r}" + (f" with {shown}" if shown else "")
        match = IntentMatch(text=text, tool=tool.name, arguments=arguments, reply=phrase.reply,
                            template=entry.template, skill=entry.skill, slots=values, why=why)
        return match, ""


class _Slots:
    """One skill's slot specs, with each slot's forms and regex worked out once."""

    def __init__(self, specs: dict):
        self.specs = specs
        self._choices: dict[str, dict[str, str] | None] = {}
        self._patterns: dict[str, str] = {}

    def choices(self, name: str) -> dict[str, str] | None:
        """{normalized spoken form: value} for a list or mapping slot; None for text/number."""
        if name not in self._choices:
            spec = self.specs[name]
            self._choices[name] = _spoken_forms(spec) if isinstance(spec, (list, dict)) else None
        return self._choices[name]

    def pattern(self, name: str) -> str:
        if name not in self._patterns:
            forms = self.choices(name)
            self._patterns[name] = _PATTERNS[self.specs[name]] if forms is None else _alternation(forms)
        return self._patterns[name]


async def answer_intent(
    match: IntentMatch,
    executor: Executor,
    ctx: ToolContext,
    confirm: Approve | None = None,
    *,
    save: Callable[[dict], None] | None = None,
    cancel: Any = None,
) -> AsyncIterator[StepEvent]:
    """Run the matched tool through the executor and answer from the phrase's reply, as turn
    step events.

    Like a turn: a confirm-tier tool runs only if `confirm(tool, arguments)` says yes (no
    confirm means no), the attempt leaves one audit row, and `save(message)` (if given)
    receives the same chat messages a model turn would store.
    """
    started = time.monotonic()
    action = Action(tool=match.tool, arguments=match.arguments, who=ctx.who, conversation_id=ctx.conversation_id,
                    source=f"phrase {match.template!r}")
    call = {"id": action.call_id, "type": "function", "function": {"name": match.tool, "arguments": match.arguments}}
    _save(save, {"role": "user", "content": match.text}, {"role": "assistant", "content": "", "tool_calls": [call]})
    outcome = None
    async for event in executor.steps(action, approve=confirm, cancel=cancel):
        if isinstance(event, ToolFinished):
            outcome = event
        else:
            yield event
    if outcome.outcome == "invalid":  # the registry changed since the match (a reload)
        yield Note(text=f"The tool {match.tool} is no longer available.", level="error")
        yield ReplyDone(text="", stopped_by="error")
        return
    yield outcome
    reply = _reply(match, outcome)
    _save(save, {"role": "tool", "content": outcome.result, "name": match.tool, "tool_call_id": action.call_id},
          {"role": "assistant", "content": reply})
    yield TextDelta(text=reply)
    stopped_by = "cancelled" if outcome.outcome == "cancelled" else "done"
    yield ReplyDone(text=reply, stopped_by=stopped_by, stats=TurnStats(duration_s=round(time.monotonic() - started, 4)))


_NOT_DONE = {
    "denied": "Not done: that needs your confirmation.",
    "cancelled": "Stopped.",
    "timeout": "That did not work: {tool} took too long to answer.",
    "crashed": "That did not work: {tool} failed unexpectedly.",
}


def _reply(match: IntentMatch, outcome: ToolFinished) -> str:
    """What the person hears: the phrase's reply when it worked, else why not."""
    if match.render is not None:
        return match.render(outcome)
    if outcome.outcome == "error":
        return "That did not work: " + outcome.result.removeprefix("Error: ")
    if outcome.outcome != "ok":
        return _NOT_DONE[outcome.outcome].format(tool=match.tool)
    if not match.reply:
        return outcome.result
    # An optional slot that was not said reads as nothing; {result} is the tool's answer.
    values = {**{name: "" for name in references(match.reply)}, **match.slots, "result": outcome.result}
    return _sentence(fill(match.reply, values))


def _save(save: Callable[[dict], None] | None, *messages: dict) -> None:
    for message in messages if save is not None else ():
        save(message)


def _sentence(text: str) -> str:
    """One space between words, a capital first letter: "kitchen lights on." -> "Kitchen lights on."."""
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def _render(nodes: tuple, slot_pattern) -> str:
    """A template tree as a regex; every piece ends with one space (the text gets one too)."""
    out = []
    for node in nodes:
        kind, value = node
        if kind == "word":
            out.append(re.escape(value) + " ")
        elif kind == "slot":
            out.append(f"(?P<{value}>{slot_pattern(value)}) ")
        else:
            inner = "|".join(_render(option, slot_pattern) for option in value)
            out.append(f"(?:{inner})" + ("?" if kind == "opt" else ""))
    return "".join(out)


def _edge_words(nodes: tuple) -> list[str]:
    """The fixed words a template starts with (pass it reversed for the ones it ends with)."""
    words = []
    for kind, value in nodes:
        if kind != "word":
            break
        words.append(value)
    return words


def _spoken_forms(spec: list[str] | dict[str, list[str]]) -> dict[str, str]:
    """{normalized way to say it: the value the tool gets}."""
    pairs = spec.items() if isinstance(spec, dict) else ((v, [v]) for v in spec)
    forms: dict[str, str] = {}
    for value, spoken in pairs:
        for form in [value, *spoken] if isinstance(spec, dict) else spoken:
            if normalize(str(form)):
                forms.setdefault(normalize(str(form)), str(value))
    return forms


def _alternation(forms: dict[str, str]) -> str:
    """The spoken forms as one regex alternation, longest first so "kitchen lights" beats "kitchen"."""
    if not forms:
        return r"(?!x)x"  # no values: the slot never matches
    return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))


def _whole_slot(value: Any) -> bool:
    """Whether an argument is exactly one slot, so its value keeps its type (a number stays one)."""
    return isinstance(value, str) and re.fullmatch(r"\{\w+\}", value) is not None


def _number(spoken: str) -> float | int | str:
    """"2" -> 2, "2.5" -> 2.5, "1/2" -> 0.5 ("1/0" stays text, for the tool to refuse)."""
    if "/" in spoken:
        top, bottom = spoken.split("/")
        return float(top) / float(bottom) if float(bottom) else spoken
    return float(spoken) if "." in spoken else int(spoken)
