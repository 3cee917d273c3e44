"""Home Assistant's sentence templates, compiled into agentd's own regexes.

hassil (Home Assistant's template matcher) parses the syntax; this module turns its expression
trees (sequences, alternatives, optionals, permutations, <rules> and {lists}) into one Python
regex per template, plus the literal fragments a sentence must contain, so the phrase path
tries only the few templates a sentence could fit. hassil's own `recognize()` walks every
template at each call: measured 6-8 ms per German sentence against well under 1 ms here
(`agentd bench`).

Text goes through `HassText.clean()` (hassil's case folding, punctuation and skip words), and
template text through the same folding, so both sides compare alike.

A number slot takes digits ("auf 50 Prozent") or, as hassil's matcher does, the language's
number words ("auf fünfzig Prozent", "à cinquante pour cent"): the words come from
unicode-rbnf's spell-out rules (through hassil) for the numbers 0-100 of the slot's range, and
go into the regex as one trie-shaped alternation, so they cost a few characters' steps.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

# Whitespace in a template: a space, or nothing where an optional part left two spaces.
# "\b" keeps "schalte" and "licht" from running together as "schaltelicht".
_GAP = r"(?:\s+|\b)"
_NEVER = r"(?!)"
_NUMBER = r"\d+(?:[.,]\d+)?"
_MAX_DEPTH = 24
# Number words are made for the numbers of a range up to this size: percentages and degrees.
WORD_NUMBERS_MAX = 100
# Said for a number, but not what the spell-out rules write ("einhundert").
SPOKEN_NUMBERS = {"de": {"hundert": 100}}
log = logging.getLogger(__name__)


@dataclass
class ListSlot:
    """How one captured group turns into a slot value."""

    slot: str
    plain: dict[str, Any] = field(default_factory=dict)  # folded spoken form -> value
    templated: list[tuple[re.Pattern, Any]] = field(default_factory=list)
    contexts: dict[Any, dict] = field(default_factory=dict)  # value -> context it brings
    number: tuple[float, float] | None = None  # a range: (start, stop)
    number_words: dict[str, float] = field(default_factory=dict)  # folded words -> value
    wildcard: bool = False

    def value(self, spoken: str) -> tuple[bool, Any]:
        """(whether the spoken text is a value of this list, the value)."""
        if self.wildcard:
            return True, spoken.strip()
        if self.number is not None:
            number = float(self.number_words.get(spoken) or spoken.replace(",", "."))
            number = int(number) if number.is_integer() else number
            return self.number[0] <= number <= self.number[1], number
        if spoken in self.plain:
            return True, self.plain[spoken]
        for pattern, value in self.templated:
            if pattern.fullmatch(spoken):
                return True, value
        return False, None


@dataclass
class CompiledTemplate:
    """One sentence template as a regex, and what its groups mean."""

    regex: re.Pattern
    groups: dict[str, ListSlot]  # regex group name -> list slot
    needed: frozenset[str] | None  # one of these fragments is in every matching sentence
    text: str


def fold(text: str) -> str:
    """hassil's case folding and unicode form, so template and sentence compare alike."""
    from hassil.util import fold_case

    return fold_case(unicodedata.normalize("NFC", text).replace("’", "'"))


class HassText:
    """A language's text clean-up before matching: case, punctuation, skip words ("bitte")."""

    def __init__(self, skip_words: Iterable[str], extra: Iterable[str] = ()):
        words = sorted({fold(w).strip() for w in [*skip_words, *extra] if w.strip()}, key=len, reverse=True)
        alternatives = "|".join(re.escape(w) for w in words) or _NEVER
        self._skip = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
        self._spaces = re.compile(r"\s+")

    def clean(self, text: str) -> str:
        from hassil.util import remove_punctuation

        text = remove_punctuation(fold(text))
        text = self._skip.sub(" ", text)
        return self._spaces.sub(" ", text).strip()


class TemplateCompiler:
    """Expression trees -> regexes, with the language's rules and the home's slot lists."""

    def __init__(self, rules: dict, lists: dict, language: str | None = None):
        self.rules = rules  # name -> hassil Sentence
        self.lists = lists  # name -> hassil SlotList
        self.language = language  # number words in this language; None: digits only
        self._rule_needs: dict[str, frozenset[str] | None] = {}

    def compile(self, sentence: Any, text: str, keep: dict[str, Any] | None = None) -> CompiledTemplate:
        """One hassil Sentence; `keep` narrows lists by context ({"domain": ["light"]})."""
        groups: dict[str, ListSlot] = {}
        body = self._render(sentence.expression, groups, keep or {}, 0)
        regex = re.compile(rf"\s*{body}\s*")
        return CompiledTemplate(regex, groups, self._needs(sentence.expression, 0), text)

    def _render(self, exp: Any, groups: dict, keep: dict, depth: int) -> str:
        from hassil.expression import Alternative, ListReference, Permutation, RuleReference, Sequence, TextChunk

        if depth > _MAX_DEPTH:
            raise ValueError("expansion rules refer to each other in a loop")
        if isinstance(exp, TextChunk):
            return _chunk(exp.text)
        if isinstance(exp, RuleReference):
            rule = self.rules.get(exp.rule_name)
            if rule is None:
                raise ValueError(f"no expansion rule <{exp.rule_name}>")
            return self._render(rule.expression, groups, keep, depth + 1)
        if isinstance(exp, ListReference):
            return self._list(exp, groups, keep)
        if isinstance(exp, Permutation):
            orders = itertools.permutations(exp.items)
            return "(?:" + "|".join(
                _GAP.join(self._render(item, groups, keep, depth + 1) for item in order) for order in orders) + ")"
        if isinstance(exp, Alternative):
            return "(?:" + "|".join(self._render(item, groups, keep, depth + 1) for item in exp.items) + ")"
        if isinstance(exp, Sequence):
            return "".join(self._render(item, groups, keep, depth + 1) for item in exp.items)
        raise ValueError(f"unknown template part {type(exp).__name__}")

    def _list(self, ref: Any, groups: dict, keep: dict) -> str:
        from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList

        name = f"g{len(groups)}"
        slot = ListSlot(ref.slot_name)
        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            pattern = self._range(slot, RangeSlotList(name=None, start=start, stop=stop, step=step))
        else:
            found = self.lists.get(ref.list_name)
            if found is None:
                return _NEVER  # a list the home does not have (floors): the template cannot fit
            if isinstance(found, RangeSlotList):
                pattern = self._range(slot, found)
            elif isinstance(found, WildcardSlotList):
                slot.wildcard, pattern = True, r".+?"
            elif isinstance(found, TextSlotList):
                pattern = self._values(found, slot, keep)
            else:
                return _NEVER
        groups[name] = slot
        return f"(?P<{name}>{pattern})"

    def _range(self, slot: ListSlot, found: Any) -> str:
        """A range's pattern: digits, or the language's words for its numbers up to 100."""
        slot.number = (found.start, found.stop)
        if not (found.words and self.language):
            return _NUMBER
        words = number_words(found.words_language or self.language, found.start, found.stop, found.step,
                             found.fraction_type)
        slot.number_words = words
        return f"(?:{_NUMBER}|{trie_pattern(words)})" if words else _NUMBER

    def _values(self, found: Any, slot: ListSlot, keep: dict) -> str:
        """A text list's values as an alternation (longest first), filling slot's lookup."""
        from hassil.expression import TextChunk

        alternatives = []
        for value in found.values:
            if not _fits(value.context or {}, keep):
                continue  # e.g. a lock's name where only lights may be named
            if value.context:
                slot.contexts[value.value_out] = value.context
            if isinstance(value.text_in, TextChunk):
                spoken = " ".join(fold(value.text_in.text).split())
                if spoken:
                    slot.plain.setdefault(spoken, value.value_out)
                    alternatives.append(re.escape(spoken).replace(r"\ ", _GAP))
            else:
                inner = self._render(value.text_in, {}, {}, 1)
                slot.templated.append((re.compile(inner), value.value_out))
                alternatives.append(f"(?:{inner})")
        alternatives.sort(key=len, reverse=True)
        return "|".join(alternatives) or _NEVER

    def _needs(self, exp: Any, depth: int) -> frozenset[str] | None:
        """Fragments of which every matching sentence has at least one; None if none is sure."""
        from hassil.expression import Alternative, Group, RuleReference, TextChunk

        if depth > _MAX_DEPTH:
            return None
        if isinstance(exp, TextChunk):
            tokens = fold(exp.text).split()
            longest = max(tokens, key=len, default="")
            return frozenset([longest]) if len(longest) > 1 else None
        if isinstance(exp, RuleReference):
            if exp.rule_name not in self._rule_needs:
                rule = self.rules.get(exp.rule_name)
                self._rule_needs[exp.rule_name] = self._needs(rule.expression, depth + 1) if rule else None
            return self._rule_needs[exp.rule_name]
        if isinstance(exp, Alternative):
            options = [self._needs(item, depth + 1) for item in exp.items]
            if exp.is_optional or not options or any(o is None for o in options):
                return None
            return frozenset().union(*options)
        if isinstance(exp, Group):  # a sequence or permutation: every item is said
            options = [o for o in (self._needs(item, depth + 1) for item in exp.items) if o]
            return max(options, key=lambda o: (min(map(len, o)), -len(o)), default=None)
        return None  # a list: its values vary


@functools.lru_cache(maxsize=32)
def number_words(language: str, start: int, stop: int, step: int, fractions: Any) -> dict[str, float]:
    """{folded spoken number: value} for a range's numbers within ±WORD_NUMBERS_MAX, in every
    form the language's spell-out rules give ("ein", "eine", "eins"; "vingt-et-un" and "vingt
    et un"; "dreißig" and "dreissig"). Empty if unicode-rbnf has no rules for the language."""
    from hassil.intents import RangeFractionType, RangeSlotList
    from hassil.numbers import get_rbnf_engine
    from hassil.util import remove_punctuation

    try:
        engine = get_rbnf_engine(language)
    except ValueError:
        log.info("no number words for %s: number slots take digits only", language)
        return {}
    words: dict[str, float] = {}
    low, high = max(start, -WORD_NUMBERS_MAX), min(stop, WORD_NUMBERS_MAX)
    if low > high:  # a range of big numbers (colour temperatures in kelvin): digits only
        return words
    spans = RangeSlotList(name=None, start=low, stop=high, step=step,
                          fraction_type=RangeFractionType(fractions) if fractions else None)
    try:  # nb has an engine but no spell-out rules: format_number raises "No rulesets"
        spelled = [(number, engine.format_number(number).text_by_ruleset.values()) for number in spans.get_numbers()]
    except ValueError as exc:
        log.info("no number words for %s (%s): number slots take digits only", language, exc)
        return {}
    for number, texts in spelled:
        for text in texts:
            for variant in (text, text.replace("-", " ")):
                spoken = " ".join(remove_punctuation(fold(variant)).split())
                if spoken:
                    words.setdefault(spoken, int(number) if float(number).is_integer() else number)
    words.update({w: n for w, n in SPOKEN_NUMBERS.get(language.split("-")[0], {}).items() if low <= n <= high})
    return words


def trie_pattern(words: Iterable[str]) -> str:
    """A regex matching exactly these words, shaped as a trie ("ein(?:s|undzwanzig)?"), so
    a few hundred number words cost about one step per character instead of one try each."""
    root: dict = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_node(root)


def _trie_node(node: dict) -> str:
    ends = "" in node
    branches = [re.escape(char) + _trie_node(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends:
        return f"(?:{body})?" if len(branches) == 1 else body + "?"
    return body


def _chunk(text: str) -> str:
    """Literal template text as a regex with forgiving spaces."""
    folded = fold(text)
    parts = re.split(r"\s+", folded)
    return _GAP.join(re.escape(p) for p in parts)


def _fits(context: dict, keep: dict) -> bool:
    """Whether a value's context satisfies what a template requires (missing keys pass)."""
    for key, wanted in keep.items():
        if key not in context:
            continue
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if context[key] not in allowed:
            return False
    return True
