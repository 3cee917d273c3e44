"""A Lark grammar (llguidance's dialect) for everything a model may write in one call.

The grammar is built from the registered tools' JSON schemas. It constrains a call only as far
as the model has committed to it: the tool name is free (any identifier-like name, bounded),
and once the name written is a registered tool's, that tool's parameters, value types, enum
members and required parameters apply. A name that is not registered takes a loose body that
still closes and parses, so the turn answers it as an unknown tool, exactly as unconstrained
decoding would: the grammar never turns a call the model did not mean into a real one.
Outside a tool call the text is free, except that it cannot spell the tool-call start tag: the
only way into a tool call is through the grammar's own rule.

Registered names are literal lexemes and the free name is a lexeme that excludes exactly them,
both ending at the name's closing delimiter; llguidance's lexer follows all of them at once, so
`set_timer` and `set_timer_x` are both writable (the greedy lexer would otherwise commit to
the registered name's literal and then reject the "_").

Two tool-call styles, picked from mlx-lm's parser for the model:
- "xml" (Qwen3.5, mlx-lm's `qwen3_coder`): `<tool_call>\\n<function=NAME>\\n<parameter=P>\\n
  VALUE\\n</parameter>\\n</function>\\n</tool_call>`. Values are one line: llguidance's lexer
  is greedy, so a value that could hold a newline would swallow the "\\n</parameter>" after
  it. "null" is not a value (mlx-lm's parser reads it as None): an optional parameter is
  left out instead. Parameters come in schema order.
- "json" (Hermes / Qwen3 style, mlx-lm's `json_tools`): `<tool_call>{"name": ..., "arguments":
  {...}}</tool_call>`, the arguments checked by llguidance's embedded `%json` schema.

A tag that is one token of the vocabulary (Qwen's `<tool_call>`, `</think>`) is written as
that token (`<[id]>`), never as text; a tag that is plain text (SmolLM2's) is a literal,
and free text then cannot contain "<" at all, for the same greedy-lexer reason as above.

`require_call` (benchmarks, tests: OpenAI's tool_choice="required") asks for a call to one of
the given tools, so there the name is one of them.
"""

from __future__ import annotations

import json
from typing import Iterable, Literal

from agent.llm.stream import Tags

Style = Literal["xml", "json"]

# Cap on one string value, in tokens: a confused model cannot write forever inside a call.
STRING_MAX_TOKENS = 64
# A tool or parameter name the model may write: identifier-like, bounded.
OTHER_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}"
# A call to a name that is not registered is bounded too: parameters, and (JSON) tokens.
OTHER_MAX_PARAMETERS = 8
OTHER_MAX_TOKENS = 256
# One line, not blank, never the closing tag.
_ONE_LINE = r"/[^\n]*[^\s][^\n]*/ & ~/.*<\/parameter>.*/"
_ARGUMENTS_KEY = json.dumps(', "arguments": ')
_INTEGER = r"/-?(0|[1-9][0-9]{0,17})/"
_NUMBER = r"/-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?/"


def style_for(parser_module: str) -> Style:
    """The tool-call style of an mlx-lm tool parser module (by its name)."""
    if parser_module.endswith("qwen3_coder"):
        return "xml"
    if parser_module.endswith("json_tools"):
        return "json"
    raise ValueError(
        f"constrained decoding knows mlx-lm's qwen3_coder and json_tools tool-call formats, not {parser_module!r}: "
        "this model's tool calls are not constrained"
    )


def tool_grammar(
    tools: list[dict],
    *,
    style: Style,
    tags: Tags,
    tag_tokens: dict[str, int],
    thinking: bool = False,
    require_call: bool = False,
) -> str:
    """The Lark grammar of one model reply: optional thinking, then text and tool calls.

    `tag_tokens` maps each tag that is a single token to its id. `require_call` makes the
    reply exactly one call to one of `tools` (OpenAI's tool_choice="required", one call).
    """
    g = _Builder(tags, tag_tokens)
    rules = ["%llguidance {}"]
    if thinking:
        rules.append(f"start: think_part answer\nthink_part: THINK? {g.tag(tags.think_end)}")
        rules.append(f"THINK: {g.free_text(extra_banned=[tags.think_end])}")
    else:
        rules.append("start: answer")
    if not tools:
        rules.append("answer: TEXT?")
    elif require_call:
        rules.append("answer: call")
    else:
        rules.append("answer: TEXT? (call TEXT?)*")
    rules.append(f"TEXT: {g.free_text()}")
    if tools:
        named = [f"call_{i}" for i in range(len(tools))] + ([] if require_call else ["other_call"])
        xml = style == "xml"
        head, close = (_literal("\n<function="), ">") if xml else (_literal("{\"name\": \""), '"')
        end = _literal("</function>\n") if xml else _literal("}")
        newline = "" if xml else f"{_literal(chr(10))}?"
        rules.append(f"call: {g.tag(tags.tool_start)} {newline} {head} named_call {end} {newline} {g.tag(tags.tool_end)}")
        rules.append("named_call: " + " | ".join(named))
        for i, tool in enumerate(tools):
            name_lexeme = f"NAME_{i}"
            rules.append(f"{name_lexeme}: {_literal(tool_name(tool) + close)}")
            body = _xml_parameters if xml else _json_arguments
            rules.extend(body(f"call_{i}", name_lexeme, _parameters(tool)))
        if not require_call:
            names = "|".join(_regex_escape(tool_name(t)) for t in tools)
            rules.append(f"OTHER_NAME: /{OTHER_NAME}{_regex_escape(close)}/ & ~/({names}){_regex_escape(close)}/")
            rules.extend(_xml_other() if xml else _json_other())
    return "\n".join(rules) + "\n"


def tool_name(tool: dict) -> str:
    return tool.get("function", tool).get("name", "?")


def _parameters(tool: dict) -> dict:
    return tool.get("function", tool).get("parameters") or {"type": "object", "properties": {}}


class _Builder:
    """Tag spelling and free-text lexemes for one vocabulary."""

    def __init__(self, tags: Tags, tag_tokens: dict[str, int]):
        self.tags = tags
        self.tag_tokens = tag_tokens

    def tag(self, text: str) -> str:
        token = self.tag_tokens.get(text)
        return f"<[{token}]>" if token is not None else _literal(text)

    def free_text(self, extra_banned: Iterable[str] = ()) -> str:
        banned = [self.tags.tool_start, *extra_banned]
        if any(t not in self.tag_tokens for t in banned):
            return r"/[^<]+/"
        spelled = " & ".join(f"~/(.|\\n)*{_regex_escape(t)}(.|\\n)*/" for t in banned)
        return f"/(.|\\n)+/ & {spelled}"


def _xml_parameters(rule: str, name_lexeme: str, params: dict) -> list[str]:
    """A registered tool's call after `<function=`: its name, then its parameters."""
    required = set(params.get("required") or [])
    parts, rules = [], []
    for i, (pname, pschema) in enumerate((params.get("properties") or {}).items()):
        prule = f"{rule}_p{i}"
        value = _xml_value(f"{prule}_v", pschema, rules)
        rules.append(f"{prule}: {_literal(f'<parameter={pname}>' + chr(10))} {value} {_literal(chr(10) + '</parameter>' + chr(10))}")
        parts.append(prule if pname in required else f"{prule}?")
    return [f"{rule}: {name_lexeme} {_literal(chr(10))} {' '.join(parts)}", *rules]


def _xml_other() -> list[str]:
    """A call to a name that is not registered: any parameters, one-line values, all bounded,
    so that it closes, parses, and is answered as an unknown tool."""
    return [
        f"other_call: OTHER_NAME {_literal(chr(10))} other_param{{0,{OTHER_MAX_PARAMETERS}}}",
        f"other_param: \"<parameter=\" PARAMETER_NAME {_literal('>' + chr(10))} other_value {_literal(chr(10) + '</parameter>' + chr(10))}",
        f"PARAMETER_NAME: /{OTHER_NAME}/",
        f"other_value[max_tokens={STRING_MAX_TOKENS}]: OTHER_VALUE",
        f"OTHER_VALUE: {_ONE_LINE}",
    ]


def _xml_value(rule: str, schema: dict, rules: list[str]) -> str:
    """The grammar of one parameter value as mlx-lm's qwen3_coder parser reads it."""
    if "enum" in schema:
        return "(" + " | ".join(_literal(_xml_text(v)) for v in schema["enum"]) + ")"
    kind = schema.get("type")
    if kind == "integer":
        return _INTEGER
    if kind == "number":
        return _NUMBER
    if kind == "boolean":
        return '("true" | "false" | "True" | "False")'
    if kind == "string":
        lexeme = rule.upper()
        rules.append(f"{rule}[max_tokens={STRING_MAX_TOKENS}]: {lexeme}")
        # One line, not blank, not "null", never the closing tag.
        rules.append(f"{lexeme}: {_ONE_LINE} & ~/(?i:null)/")
        return rule
    # arrays, objects and anything untyped: JSON, which the parser json.loads.
    rules.append(f"{rule}: %json {_strict_json(schema)}")
    return rule


def _json_arguments(rule: str, name_lexeme: str, params: dict) -> list[str]:
    """A registered tool's call after `{"name": "`: its name, then its arguments object."""
    return [
        f"{rule}: {name_lexeme} {_ARGUMENTS_KEY} {rule}_arguments",
        f"{rule}_arguments: %json {_strict_json({'type': 'object', **params})}",
    ]


def _json_other() -> list[str]:
    """A call to a name that is not registered: any arguments object, bounded."""
    return [
        f"other_call: OTHER_NAME {_ARGUMENTS_KEY} other_arguments",
        f"other_arguments[max_tokens={OTHER_MAX_TOKENS}]: %json {_strict_json({'type': 'object'})}",
    ]


def _strict_json(schema: dict) -> str:
    """The schema for llguidance's `%json`, writing JSON as json.dumps and the chat templates do:
    its default flexible whitespace lets a weak model pad a call with spaces until max_tokens."""
    options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    return json.dumps({**schema, "x-guidance": options}, ensure_ascii=False)


def _xml_text(value: object) -> str:
    """How the chat template writes a value inside <parameter> (Jinja's string filter)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return value if isinstance(value, str) else json.dumps(value)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_REGEX_META = set("\\.+*?()|[]{}^$#&-~/")


def _regex_escape(text: str) -> str:
    # Only real metacharacters: Rust's regex reads some escaped characters (\< \b) as assertions.
    return "".join("\\" + c if c in _REGEX_META else c for c in text)
