"""Tool registry: a tool is a typed function with a docstring.

The JSON schema the model sees is generated from the signature and the docstring (never
hand-written), and the arguments the model sends are validated and coerced against the same
pydantic model before the function runs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Protocol

import pydantic

Risk = Literal["read", "write", "confirm"]
RISK_TIERS: tuple[str, ...] = typing.get_args(Risk)
_TOOL_ATTR = "__agentd_tool__"


class ToolError(Exception):
    """A tool's expected failure: its message goes back to the model as the tool result."""


class ToolDefinitionError(TypeError):
    """A function cannot be a tool (no type hints, no docstring, bad risk tier)."""


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool's schema."""


class ToolResult(str):
    """A tool's answer: the text the model reads, with `data` for code beside it.

    A tool that knows its outcome as data (the home tools' device states) returns
    `ToolResult(text, data)`. It is a str, so the model, the history and a test that calls the
    function read exactly the text; the executor hands `data` on in `ActionOutcome.data` and
    `ToolFinished.data`, so the phrase path's replies decide from the states, not from words.
    """

    data: Any

    def __new__(cls, text: str, data: Any = None) -> "ToolResult":
        result = super().__new__(cls, text)
        result.data = data
        return result


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real clock, timezone-aware in the given zone (or the machine's)."""

    def __init__(self, tz: Any = None):
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz) if self.tz else datetime.now(timezone.utc).astimezone()


@dataclass(frozen=True)
class FixedClock:
    """A clock that always says the same time (tests, replays)."""

    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool may reach besides its arguments. Hidden from the model's schema."""

    store: Any = None
    settings: Any = None
    clock: Clock = field(default_factory=SystemClock)
    who: str = "cli"
    conversation_id: str | None = None
    # The daemon's services, handed in rather than found in module globals: None where agentd
    # runs without them (a one-off `ask`, a test), and the tools that need them say so.
    home_control: Any = None  # agent.home_control.HomeService
    schedule: Any = None  # agent.schedule.Scheduler
    # Asks the model about one picture inside the current turn:
    # `await ctx.vision(image_bytes, question) -> str` (the model's answer as text). None where
    # no vision-capable engine runs; a tool that needs it says so.
    vision: Any = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    risk: str
    function: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    parameters: dict
    wants_ctx: bool
    skill: str | None = None
    timeout_s: float | None = None  # its own limit on one call, below agent.tool_timeout_s

    @property
    def schema(self) -> dict:
        """The OpenAI-style function schema that chat templates render."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Any) -> dict:
        """Check and coerce the model's arguments; raise ToolArgumentError naming the problem."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"{self.name}: arguments must be an object, got {type(arguments).__name__}"
            )
        try:
            parsed = self.arguments_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolArgumentError(f"{self.name}: {_describe_errors(exc)}") from None
        return {name: getattr(parsed, name) for name in self.arguments_model.model_fields}

    async def call(self, arguments: dict, ctx: ToolContext) -> str:
        """Run the tool on already-validated arguments and return its result as text (a
        ToolResult, with its data, where the tool returned one)."""
        kwargs = dict(arguments)
        if self.wants_ctx:
            kwargs["ctx"] = ctx
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**kwargs)
        else:
            result = await asyncio.to_thread(self.function, **kwargs)
        return result_text(result)


def result_text(result: Any) -> str:
    """Serialise a tool's return value the way the model will read it (a ToolResult is one)."""
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False, default=str)


def tool(fn: Callable | None = None, *, name: str | None = None, risk: str = "read"):
    """Mark a function as a tool: `@tool` or `@tool(risk="confirm")`."""

    def mark(func: Callable) -> Callable:
        setattr(func, _TOOL_ATTR, build_tool(func, name=name, risk=risk))
        return func

    return mark(fn) if fn is not None else mark


def build_tool(func: Callable, *, name: str | None = None, risk: str = "read", skill: str | None = None) -> Tool:
    """Make a Tool from a typed, documented function."""
    tool_name = name or func.__name__
    where = f"{func.__module__}.{func.__qualname__}"
    if risk not in RISK_TIERS:
        raise ToolDefinitionError(f"{where}: risk {risk!r} is not one of {', '.join(RISK_TIERS)}")
    doc = inspect.getdoc(func)
    if not doc:
        raise ToolDefinitionError(f"{where}: a tool needs a docstring (the model reads it)")
    description, param_docs = parse_docstring(doc)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # a NameError in an annotation, say
        raise ToolDefinitionError(f"{where}: cannot read type hints: {exc}") from None

    fields: dict[str, Any] = {}
    wants_ctx = False
    for param in inspect.signature(func).parameters.values():
        if param.name == "ctx":
            wants_ctx = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"{where}: *args/**kwargs cannot be described to the model")
        if param.name not in hints:
            raise ToolDefinitionError(f"{where}: parameter {param.name!r} has no type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hints[param.name],
            pydantic.Field(default, description=param_docs.get(param.name)),
        )
    model = pydantic.create_model(
        f"{tool_name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return Tool(
        name=tool_name,
        description=description,
        risk=risk,
        function=func,
        arguments_model=model,
        parameters=clean_schema(model.model_json_schema()),
        wants_ctx=wants_ctx,
        skill=skill,
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {param: description})."""
    parts = re.split(r"^(?:Args|Arguments|Parameters):\s*$", doc, maxsplit=1, flags=re.M)
    head, args_section = (parts[0], parts[1]) if len(parts) == 2 else (doc, "")
    params: dict[str, str] = {}
    current, indent = None, None
    for line in args_section.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            break  # the next section (Returns:, Raises:) ends the arguments
        match = re.match(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match and (indent is None or len(match.group(1)) <= indent):
            current, indent = match.group(2), len(match.group(1))
            params[current] = match.group(3).strip()
        elif current:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return " ".join(head.strip().split("\n\n")[0].split()), params


def clean_schema(schema: dict) -> dict:
    """Drop titles and collapse Optional[X] to X, which small models read better (pydantic's
    schemas, and MCP servers' schemas, which are mostly pydantic's too)."""
    defs = schema.pop("$defs", {})

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return clean(dict(defs[node["$ref"].rsplit("/", 1)[-1]]))
            node = {k: clean(v) for k, v in node.items() if k != "title"}
            options = node.get("anyOf")
            if options and len(options) == 2 and {"type": "null"} in options:
                inner = next(o for o in options if o != {"type": "null"})
                rest = {k: v for k, v in node.items() if k not in ("anyOf", "default") or (k == "default" and v is not None)}
                node = {**inner, **rest}
            return node
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    cleaned = clean(schema)
    cleaned.setdefault("properties", {})
    cleaned.setdefault("required", [])
    return cleaned


def _describe_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown argument {where!r}")
        elif err["type"] == "missing":
            parts.append(f"missing required argument {where!r}")
        else:
            parts.append(f"argument {where!r}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def tools_in(namespace: Any) -> list[Tool]:
    """The tools marked with @tool in a module (or any object with attributes), in source order."""
    found = [getattr(v, _TOOL_ATTR) for v in vars(namespace).values() if hasattr(v, _TOOL_ATTR)]
    return sorted(found, key=lambda t: (t.function.__code__.co_firstlineno))


class ToolRegistry:
    """The tools the model may call, in a stable order (the prefix cache depends on it)."""

    def __init__(self, tools: list[Tool] | None = None):
        self._tools: dict[str, Tool] = {}
        self.shown: set[str] | None = None  # tools the model is shown (None: all); see show_only
        for t in tools or []:
            self.add(t)

    def add(self, item: Tool | Callable, *, skill: str | None = None) -> Tool:
        """Register a Tool or an @tool-decorated function."""
        t = item if isinstance(item, Tool) else getattr(item, _TOOL_ATTR, None)
        if t is None:
            t = build_tool(item)
        if skill is not None:
            t = Tool(**{**t.__dict__, "skill": skill})
        if t.name in self._tools and self._tools[t.name].function is not t.function:
            raise ToolDefinitionError(f"two tools are named {t.name!r}")
        self._tools[t.name] = t
        return t

    def add_module(self, module: Any, *, skill: str | None = None) -> list[Tool]:
        return [self.add(t, skill=skill) for t in tools_in(module)]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict]:
        """The schemas the model is shown, in registration order."""
        return [t.schema for t in self._tools.values() if self.shown is None or t.name in self.shown]

    def show_only(self, names: list[str] | None) -> None:
        """Show the model only these tools (a small prompt for a slow CPU); the rest stay
        registered, so phrases still run them. None or [] shows every tool."""
        self.shown = set(names) if names else None

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self):
        return iter(self._tools.values())
