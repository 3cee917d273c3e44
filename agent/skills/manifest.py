"""SKILL.md: YAML front matter between `---` lines, then Markdown instructions.

The front matter follows the open SKILL.md convention (`name`, `description`) and adds
agentd's optional keys (`risk`, `slots`, `phrases`, `sentences`, `requires`). Keys other agents use
(`license`, `allowed-tools`, `metadata`, ...) are accepted and ignored. Every error names
the file and the line.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.skills.phrases import PhraseSpec, SentenceSpec, SlotSpec
from agent.tools import Risk

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class SkillFileError(ValueError):
    """SKILL.md cannot be used; the message starts with `FILE: line N:`."""


class FrontMatter(BaseModel):
    """The YAML between the `---` lines of a SKILL.md."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    description: str = Field(min_length=1)
    risk: Risk | None = None
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    phrases: list[PhraseSpec] = Field(default_factory=list)
    # Phrases in other languages, Home Assistant's template syntax: {"de": [SentenceSpec, ...]}.
    sentences: dict[str, list[SentenceSpec]] = Field(default_factory=dict)
    requires: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _skill_name(cls, name: str | None) -> str | None:
        if name is not None and not re.match(NAME_PATTERN, name):
            raise ValueError(f"{name!r} is not a skill name: use lower-case letters, digits, - and _ (like 'kitchen')")
        return name

    @field_validator("slots")
    @classmethod
    def _slot_names(cls, slots: dict) -> dict:
        for name in slots:
            if not re.match(r"^[a-z][a-z0-9_]*$", name):
                raise ValueError(f"slot name {name!r} must be lower-case letters, digits and _")
        return slots


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so `state: [on, off]` stays words, not True/False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_skill_md(path: Path) -> tuple[FrontMatter, str, list[str]]:
    """(front matter, Markdown body, notes) of a SKILL.md; SkillFileError names file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SkillFileError(f"{path}: line 1: not UTF-8 text") from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise SkillFileError(f"{path}: line 1: expected '---' to start the YAML front matter (name, description)")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise SkillFileError(f"{path}: line 1: the front matter started with '---' is never closed by another '---'")
    node, data = _parse_yaml(path, "".join(lines[1:end]))
    if not isinstance(data, dict):
        raise SkillFileError(f"{path}: line 2: the front matter must be a mapping of keys (name, description, ...)")
    try:
        meta = FrontMatter.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SkillFileError(_explain(path, exc, node, data)) from None
    notes = []
    for key in meta.model_extra or {}:
        close = difflib.get_close_matches(str(key), list(FrontMatter.model_fields), n=1, cutoff=0.75)
        if close:
            notes.append(f"{path}: line {_line(node, (key,))}: unknown key {key!r} ignored (did you mean {close[0]!r}?)")
    return meta, "".join(lines[end + 1:]), notes


def _parse_yaml(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The YAML's node tree (for line numbers) and its data."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark else 2  # +1 for counting from 1, +1 for the opening '---'
        raise SkillFileError(f"{path}: line {line}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SkillFileError(f"{path}: line 2: YAML syntax error: {exc}") from None
    finally:
        loader.dispose()


def _explain(path: Path, exc: pydantic.ValidationError, node: yaml.Node, data: Any) -> str:
    """The first problem as `FILE: line N: key.path: what is wrong`."""
    error = exc.errors(include_url=False)[0]
    real = _real_loc(error["loc"], data)
    missing = error["type"] == "missing"
    shown = error["loc"] if missing else real
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in shown).replace(".[", "[") or "front matter"
    message = "required key is missing" if missing else str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: line {_line(node, real)}: {where}: {message}"


def _real_loc(loc: tuple, data: Any) -> tuple:
    """The part of pydantic's error location that exists in the data (drops union member tags)."""
    real = []
    for part in loc:
        if isinstance(data, dict) and part in data or isinstance(data, list) and isinstance(part, int) and part < len(data):
            real.append(part)
            data = data[part]
        else:
            break
    return tuple(real)


def _line(node: yaml.Node | None, loc: tuple) -> int:
    """The SKILL.md line of the value at loc (or of the nearest enclosing one)."""
    line = node.start_mark.line if node is not None else 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 2
