"""The fast phrase path in the home's language: Home Assistant's sentences, plus skills' own.

For `language` other than en, `IntentMatcher` hands sentences to `HassPhrases`: the
templates of home-assistant-intents for that language (the intents agentd has tools for,
see agent.skills.hass_actions) and the sentences skills declare for it (SKILL.md
`sentences: {de: [...]}`), compiled by agent.skills.hass_templates with the home's
devices, rooms and floors as the `name`, `area` and `floor` lists.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from agent.skills.hass_actions import INTENTS, HomeLists, plan
from agent.skills.hass_replies import Reply
from agent.skills.hass_templates import CompiledTemplate, HassText, TemplateCompiler
from agent.skills.phrases import fill
from agent.tools import ToolArgumentError, ToolRegistry

log = logging.getLogger(__name__)
MAX_WORDS = 40
_WHOLE_SLOT = re.compile(r"\{(\w+)\}")


class LanguageNotSupportedError(ValueError):
    """Home Assistant's intents have no sentences for this language."""


@dataclass
class _Entry:
    template: CompiledTemplate
    intent: str | None  # an HA intent, or None for a skill's sentence
    fixed: dict  # slot values the block assumes (domain: light)
    response: str | None  # HA's response key
    skill: str
    order: int
    spec: Any = None  # a skill's SentenceSpec


def load_language(language: str) -> tuple[str, dict]:
    """(the code home-assistant-intents knows, its data) for a BCP-47 tag: de-CH, else de."""
    from home_assistant_intents import get_intents, get_languages

    known = {code.lower(): code for code in get_languages()}
    for tag in (language, language.split("-")[0]):
        code = known.get(tag.lower().replace("_", "-"))
        if code is not None:
            return code, get_intents(code)
    raise LanguageNotSupportedError(
        f"language {language!r} has no Home Assistant sentences; use one of {', '.join(sorted(known.values()))}")


class HassPhrases:
    """All sentences for one language, compiled once; `search()` is the per-sentence call."""

    def __init__(self, language: str, registry: ToolRegistry, home: HomeLists, skills: Iterable[Any] = (),
                 *, fillers: Iterable[str] = ()):
        from hassil.intents import Intents

        self.language, data = load_language(language)
        self.registry, self.home, self.problems = registry, home, []
        intents = Intents.from_dict({**data, "intents": {k: v for k, v in data["intents"].items() if k in INTENTS}})
        self.lists = {**intents.slot_lists, **home.slot_lists()}
        self.text = HassText(intents.skip_words, fillers)
        self.responses = data.get("responses", {}).get("intents", {})
        compiler = TemplateCompiler(intents.expansion_rules, self.lists, self.language)
        entries: list[_Entry] = []
        for name, intent in intents.intents.items():
            for block in intent.data:
                if any(isinstance(v, dict) for v in block.requires_context.values()):
                    continue  # needs the satellite's own room ("hier"), which agentd does not know
                for sentence in block.sentences:
                    try:
                        compiled = compiler.compile(sentence, sentence.text, block.requires_context)
                    except Exception as exc:  # one odd sentence of a package update: report, keep the rest
                        self.problems.append(f"{name} sentence {sentence.text!r}: {type(exc).__name__}: {exc}")
                        continue
                    entries.append(_Entry(compiled, name, dict(block.slots), block.response, "home-assistant",
                                          len(entries)))
        for skill in skills:
            entries.extend(self._skill_entries(skill, intents.expansion_rules, len(entries)))
        self._index: dict[str, list[_Entry]] = {}
        self._always: list[_Entry] = []
        for entry in entries:
            needed = entry.template.needed
            if not needed:
                self._always.append(entry)
            for fragment in needed or ():
                self._index.setdefault(fragment, []).append(entry)
        self._fragments = list(self._index.items())
        self.count = len(entries)

    def _skill_entries(self, skill: Any, rules: dict, start: int) -> list[_Entry]:
        """A skill's sentences for this language, with its slots as extra lists."""
        from hassil.parse_expression import parse_sentence

        base = self.language.split("-")[0]
        specs = skill.sentences.get(self.language, [])
        if not specs and base != self.language:
            # A German sentence serves de-CH too; it may use rules only German's intents define.
            specs = skill.sentences.get(base, [])
            if specs:
                rules = {**_expansion_rules(base), **rules}
        if not specs:
            return []
        compiler = TemplateCompiler(rules, {**self.lists, **_skill_lists(skill.slots)}, self.language)
        entries = []
        for spec in specs:
            if self.registry.get(spec.tool) is None:
                self.problems.append(f"skill {skill.name}: sentences for {spec.tool!r}, which is no tool")
                continue
            for text in spec.sentences:
                try:
                    compiled = compiler.compile(parse_sentence(text, keep_text=True), text)
                except Exception as exc:  # hassil's ParseError and ours: report, keep the rest
                    self.problems.append(f"skill {skill.name}: sentence {text!r}: {exc}")
                    continue
                entries.append(_Entry(compiled, None, {}, None, skill.name, start + len(entries), spec))
        return entries

    def __len__(self) -> int:
        return self.count

    def vocabulary(self) -> list[str]:
        """The home's names (devices, then rooms): the words speech recognition cannot know."""
        return list(dict.fromkeys([*(n for _s, n, _k in self.home.names), *self.home.areas]))

    def clean(self, text: str) -> str:
        """The text as it is matched: folded case, no punctuation, no skip words ("bitte")."""
        return self.text.clean(text)

    def search(self, text: str) -> tuple[Any, list[str]]:
        """(the best IntentMatch for this text or None, why templates that fit were refused)."""
        from agent.skills.intents import IntentMatch

        said = self.clean(text)
        if not said or len(said.split()) > MAX_WORDS:
            return None, []
        candidates = {id(e): e for e in self._always}
        for fragment, entries in self._fragments:
            if fragment in said:
                candidates.update((id(e), e) for e in entries)
        best, best_rank, reasons = None, None, []
        for entry in candidates.values():
            found = entry.template.regex.fullmatch(said)
            if found is None:
                continue
            slots, captured = self._slots(entry, found)
            if slots is None:
                continue
            # A device's own name beats a room and a kind ("lampe du salon" is that lamp); then the
            # fit with the most fixed wording; then the first declared.
            rank = ("name" in slots, len(said) - captured, -entry.order)
            if best_rank is not None and rank <= best_rank:
                continue
            call = self._call(entry, slots)
            if isinstance(call, str):
                reasons.append(f"{entry.template.text!r} fits, but {call}")
                continue
            tool, arguments = call
            shown = ", ".join(f"{k}={v!r}" for k, v in slots.items())
            why = f"{entry.template.text!r} ({entry.intent or 'skill ' + entry.skill}) fits {said!r} with {shown}"
            reply = Reply(self.language, self.responses, entry.intent, entry.response, slots,
                          template=(entry.spec.reply or "{result}") if entry.spec else None)
            best = IntentMatch(text=text, tool=tool, arguments=arguments, reply=None, template=entry.template.text,
                               skill=entry.skill, slots=slots, why=why, render=reply)
            best_rank = rank
        return best, reasons

    def _slots(self, entry: _Entry, found: Any) -> tuple[dict | None, int]:
        slots, captured = dict(entry.fixed), 0
        for group, spoken in found.groupdict().items():
            if spoken is None:
                continue
            slot = entry.template.groups[group]
            ok, value = slot.value(spoken.strip())
            if not ok:
                return None, 0
            slots[slot.slot] = value
            captured += len(spoken)
        if "name" in slots and entry.intent:  # the device's kind is the domain HA would see
            slots["domain"] = self.home.kind_of(slots["name"]) or slots.get("domain")
        return slots, captured

    def _call(self, entry: _Entry, slots: dict) -> tuple[str, dict] | str:
        """(tool, validated arguments), or why not."""
        if entry.intent is not None:
            call = plan(entry.intent, slots, self.home)
            if isinstance(call, str):
                return call
            tool_name, arguments = call
        else:
            tool_name, arguments = entry.spec.tool, {}
            for key, value in entry.spec.args.items():
                filled = fill(value, slots) if isinstance(value, str) else value
                if filled is not None:  # a whole "{slot}" keeps its value's type (a number stays one)
                    whole = _WHOLE_SLOT.fullmatch(value) if isinstance(value, str) else None
                    arguments[key] = slots[whole.group(1)] if whole else filled
        tool = self.registry.get(tool_name)
        if tool is None:
            return f"there is no tool {tool_name} (is the home skill on?)"
        try:
            return tool.name, tool.validate(arguments)
        except ToolArgumentError as exc:
            return str(exc)


def _expansion_rules(language: str) -> dict:
    """The expansion rules of Home Assistant's sentences for `language`; {} if it has none."""
    from hassil.intents import Intents

    try:
        return Intents.from_dict(load_language(language)[1]).expansion_rules
    except LanguageNotSupportedError:
        return {}


def _skill_lists(slots: dict) -> dict:
    """A skill's `slots:` as hassil lists: values, {value: [ways to say it]}, number or text."""
    from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList

    lists = {}
    for name, spec in slots.items():
        if spec == "number":
            lists[name] = RangeSlotList(name=name, start=0, stop=1_000_000)
        elif spec == "text":
            lists[name] = WildcardSlotList(name=name)
        elif isinstance(spec, dict):
            lists[name] = TextSlotList.from_tuples([(s, v) for v, said in spec.items() for s in [v, *said]],
                                                   allow_template=False, name=name)
        else:
            lists[name] = TextSlotList.from_strings(spec, allow_template=False, name=name)
    return lists
