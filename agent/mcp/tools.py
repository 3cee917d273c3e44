"""An MCP server's tools as agentd tools: prefixed names, the server's JSON schemas, its risk.

An `McpTool` is an ordinary `Tool` to the rest of agentd: the model sees its schema (so
constrained decoding covers it), the executor validates its arguments (against the server's
own JSON schema, with jsonschema), asks for confirmation by its tier, applies its time limit
and audits it. Only `validate` and `call` differ from a Python tool.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema

from agent.mcp.config import McpServerSettings
from agent.tools import Tool, ToolArgumentError, ToolContext, ToolError, clean_schema

# Most tool-calling chat templates, Qwen's among them, expect names like Python identifiers.
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


class Caller(Protocol):
    """What a tool needs of its server's link: one call, answered or raising ToolError."""

    async def call(self, tool: str, arguments: dict) -> Any: ...


def tool_name(server: str, remote: str) -> str:
    return f"mcp_{server}_{_NOT_NAME.sub('_', remote)}"


@dataclass(frozen=True)
class McpTool(Tool):
    server: str = ""
    remote_name: str = ""
    link: Any = None  # the server's Caller

    def validate(self, arguments: Any) -> dict:
        """Check the model's arguments against the server's schema (nothing is coerced)."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"{self.name}: arguments must be an object, got {type(arguments).__name__}")
        problems = sorted(_validator(self.parameters).iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            where = ".".join(str(p) for p in problems[0].path) or "arguments"
            raise ToolArgumentError(f"{self.name}: {where}: {problems[0].message}")
        return arguments

    async def call(self, arguments: dict, ctx: ToolContext) -> str:
        return result_text(await self.link.call(self.remote_name, arguments))


def to_tools(server: str, config: McpServerSettings, listed: list[Any], link: Caller) -> tuple[list[McpTool], list[str]]:
    """The server's listed tools that the config lets the model see, and problems with the rest."""
    tools, problems = [], []
    for remote in listed:
        if not config.tools.allows(remote.name):
            continue
        schema = dict(getattr(remote, "input_schema", None) or {"type": "object", "properties": {}})
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"MCP server {server}: tool {remote.name!r} has an invalid input schema ({exc.message}); left out")
            continue
        schema = clean_schema(schema)
        tools.append(McpTool(
            name=tool_name(server, remote.name), description=(remote.description or remote.name).strip(),
            risk=config.tool_risk.get(remote.name, config.risk), function=_no_function, arguments_model=None,
            parameters=schema, wants_ctx=False, skill=f"mcp:{server}", timeout_s=config.timeout_s,
            server=server, remote_name=remote.name, link=link,
        ))
    return tools, problems


def result_text(result: Any) -> str:
    """A CallToolResult as the text the model reads; `isError` becomes a ToolError (the model
    is told it failed, and the audit row says `error`)."""
    parts = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '?')}, not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(block, 'uri', '?')}]")
        else:
            parts.append(f"[{kind or 'content'}]")
    text = "\n".join(parts)
    structured = getattr(result, "structured_content", None)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=str)
    if getattr(result, "is_error", False):
        raise ToolError(text or "the MCP server reported an error without saying what it was")
    return text


def _validator(schema: dict) -> Any:
    return jsonschema.validators.validator_for(schema)(schema)


def _no_function(**kwargs: Any) -> None:  # pragma: no cover - an McpTool's `call` never uses it
    raise RuntimeError("an MCP tool runs through its server link")
