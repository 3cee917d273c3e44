"""Tool calls as the model wrote them: parse, check against the registry, cap the output.

Nothing here runs a tool: every call, valid or not, goes to the executor (agent.actions).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.actions import check_arguments
from agent.tools import ToolRegistry


@dataclass
class ToolCall:
    """One tool call as the model wrote it, after parsing (or failing to)."""

    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    name: str = ""
    arguments: Any = None
    error: str | None = None
    raw: str = ""
    coerced: bool = False  # constrained decoding chose the tool name, not the model


def parse_call(kind: str, body: str, finish: str | None, tool_format: Any, registry: ToolRegistry) -> ToolCall:
    """Turn the text between the tool-call tags into a ToolCall (with `error` set on failure)."""
    call = ToolCall(raw=body)
    if kind == "unclosed_tool_call" and finish == "constraint":
        call.error = (
            "Your tool call was stopped: what you were writing fits no tool's schema. Call only a listed tool, "
            "with its parameter names and values of the right type, or answer in words."
        )
        return call
    if kind == "unclosed_tool_call":
        why = "it was cut off at max_tokens" if finish == "length" else "it was never closed"
        call.error = f"Your tool call was not complete ({why}). Write it again, complete and shorter."
        return call
    try:
        parsed = _parse_body(body, tool_format.parse, registry)
        call.name, call.arguments = str(parsed["name"]), parsed.get("arguments", {})
    except Exception as exc:  # parsers raise ValueError, JSONDecodeError, KeyError, TypeError...
        call.error = f"Your tool call could not be parsed ({type(exc).__name__}: {exc}). Use the exact tool-call format."
        return call
    if isinstance(call.arguments, str):
        try:  # some models send the arguments as a JSON string
            call.arguments = json.loads(call.arguments)
        except json.JSONDecodeError:
            pass
    return call


def _parse_body(body: str, parse: Any, registry: ToolRegistry) -> dict:
    try:
        return parse(body, registry.schemas())
    except ValueError:
        # mlx-lm's parser converts values by schema type and raises on e.g. "two" for an
        # integer; parse untyped so validation can name the argument that is wrong.
        return parse(body, None)


def check_call(call: ToolCall, registry: ToolRegistry) -> str | None:
    """Why this call cannot run, in words for the model; None if it can (arguments coerced).
    The executor's own check (agent.actions), applied to a parsed call."""
    if call.error:
        return call.error
    _, arguments, problem = check_arguments(registry, call.name, call.arguments)
    if problem is None:
        call.arguments = arguments
    return problem


def checked_calls(text: str, finish: str | None, tool_format: Any, registry: ToolRegistry) -> list[tuple[ToolCall, str | None]]:
    """Every tool call in a whole reply, split, parsed and checked as a turn does it
    (for measuring a model's calls outside a turn: benchmarks, tests)."""
    from agent.llm.stream import StreamSplitter

    splitter = StreamSplitter(tool_format.tags)
    pieces = splitter.feed(text) + splitter.finish()
    calls = [parse_call(p.kind, p.text, finish, tool_format, registry) for p in pieces if p.kind.endswith("tool_call")]
    return [(call, check_call(call, registry)) for call in calls]
