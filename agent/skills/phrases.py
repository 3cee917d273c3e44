"""Phrase templates: the small language skills use to declare what people say.

    "turn {state} [the] {device}"       {slot}, [optional words], (either|or)
    "(set|put) [the] {device} to {level} [percent]"

Templates and what people say go through the same `normalize()`, so case, punctuation and
apostrophes never matter. `PhraseSpec` is one entry of a SKILL.md `phrases:` list.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_APOSTROPHES = re.compile(r"['’`]")
# Punctuation becomes a space, except a point or slash inside a number ("2.5", "1/2").
_PUNCTUATION = re.compile(r"(?<!\d)[./]|[./](?!\d)|[^\w\s./]|_")
_TOKEN = re.compile(r"\{[^{}]*\}|[\[\]()|]|[^\s{}\[\]()|]+")
_SLOT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REFERENCE = re.compile(r"\{(\w+)\}")

# A slot is filled from a list of values, a mapping {value: [ways to say it]}, or any words
# ("text") or a number ("number").
SlotSpec = Union[Literal["text", "number"], list[str], dict[str, list[str]]]
Node = tuple  # ("word", "the") | ("slot", "device") | ("opt" | "alt", (sequence, ...))


def normalize(text: str) -> str:
    """Lower case, no apostrophes, punctuation as spaces, single spaces."""
    text = _APOSTROPHES.sub("", text.casefold())
    return " ".join(_PUNCTUATION.sub(" ", text).split())


@functools.lru_cache(maxsize=4096)
def parse_template(template: str) -> tuple[Node, ...]:
    """A template as a tree of words, slots and groups; ValueError says what is wrong."""
    tokens = _TOKEN.findall(template)
    if "".join(tokens) != "".join(template.split()):
        raise ValueError(f"template {template!r}: unmatched '{{' or '}}'")
    seen: set[str] = set()
    position = 0

    def sequence(closer: str | None) -> tuple[tuple[Node, ...], ...]:
        """Alternatives up to `closer`, each a sequence of nodes."""
        nonlocal position
        options, current = [], []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == closer:
                return (*options, tuple(current))
            if token == "|" and closer:
                options.append(tuple(current))
                current = []
            elif token in "[(":
                current.append(("opt" if token == "[" else "alt", sequence("]" if token == "[" else ")")))
            elif token in "])|":
                raise ValueError(f"template {template!r}: unexpected {token!r}")
            elif token.startswith("{"):
                name = token[1:-1].strip()
                if not _SLOT_NAME.match(name):
                    raise ValueError(f"template {template!r}: slot {token} needs a lower-case name like {{device}}")
                if name in seen:
                    raise ValueError(f"template {template!r}: slot {token} appears twice")
                seen.add(name)
                current.append(("slot", name))
            elif normalize(token):
                current.append(("word", normalize(token)))
        if closer:
            raise ValueError(f"template {template!r}: {'[' if closer == ']' else '('} is never closed")
        return (tuple(current),)

    nodes = sequence(None)[0]
    if not nodes:
        raise ValueError(f"template {template!r} has no words")
    return nodes


def slots_in(nodes: tuple[Node, ...]) -> set[str]:
    """Every slot a template mentions, optional ones included."""
    names: set[str] = set()
    for node in nodes:
        if node[0] == "slot":
            names.add(node[1])
        elif node[0] in ("opt", "alt"):
            for option in node[1]:
                names |= slots_in(option)
    return names


def fixed_words(nodes: tuple[Node, ...]) -> frozenset[str]:
    """Words that every matching sentence contains (outside any group)."""
    return frozenset(w for kind, value in nodes if kind == "word" for w in value.split())


def references(text: str) -> set[str]:
    """Slot names a reply or argument refers to with {name}."""
    return set(_REFERENCE.findall(text))


def fill(text: str, values: dict[str, str]) -> str | None:
    """Put slot values into text; None when one it refers to has no value."""
    if any(name not in values for name in references(text)):
        return None
    return _REFERENCE.sub(lambda m: str(values[m.group(1)]), text)


class _SaidSpec(BaseModel):
    """What a phrase or a sentence runs: a tool, its arguments (slot references in quotes), the reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    reply: str | None = None


def _one_or_many(value: Any) -> Any:
    """A single template may be written without a list."""
    return [value] if isinstance(value, str) else value


class PhraseSpec(_SaidSpec):
    """One `phrases:` entry: what people say, the tool it runs, and the short reply."""

    template: list[str] = Field(min_length=1)

    _template_list = field_validator("template", mode="before")(_one_or_many)

    @model_validator(mode="after")
    def _templates_fit(self) -> PhraseSpec:
        for name, value in self.args.items():
            if isinstance(value, (dict, list)):
                raise ValueError(f"args.{name}: put slot references in quotes, e.g. {name}: \"{{{name}}}\"")
        # A slot may be missing from some templates (or optional): its argument is then left
        # out. One that no template has is a typo.
        have = set().union(*(slots_in(parse_template(t)) for t in self.template))
        for what, names in (("args", set().union(*(references(v) for v in self.args.values() if isinstance(v, str)))),
                            ("reply", references(self.reply or "") - {"result"})):
            if names - have:
                raise ValueError(f"{what} use {{{sorted(names - have)[0]}}}, which no template has")
        return self


class SentenceSpec(_SaidSpec):
    """One entry of a SKILL.md `sentences: {language: [...]}`: templates in Home Assistant's
    syntax (hassil: <rules>, {lists}, [optional], (a|b)) for a language other than English,
    the tool they run, its arguments from slots, and the reply in that language."""

    sentences: list[str] = Field(min_length=1)

    _sentence_list = field_validator("sentences", mode="before")(_one_or_many)
