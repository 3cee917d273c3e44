"""The `mcp_servers:` section: MCP servers whose tools join agentd's own.

Shaped like the configs people already have for other MCP clients (`command`/`args`/`env`
for a local server started over stdio, `url`/`headers` for a streamable-HTTP one), plus what a
home agent needs: a risk tier per server or per tool (a server the person has not vouched for
is `confirm`: nothing it does happens without a yes), include/exclude lists so a big server
does not fill the model's context, and a per-call time limit.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Risk = Literal["read", "write", "confirm"]
SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,30}$")


class _Section(BaseModel):
    # The same rules as agent.settings._Section (repeated here to avoid a circular import).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class McpToolChoice(_Section):
    """Which of a server's tools the model sees (names as the server gives them)."""

    include: list[str] = []  # empty: all of them
    exclude: list[str] = []

    def allows(self, name: str) -> bool:
        return (not self.include or name in self.include) and name not in self.exclude


class McpServerSettings(_Section):
    """One MCP server: started as a local program (`command`) or reached at a `url`."""

    command: str | None = None
    args: list[str] = []
    # Extra environment for a local server; it otherwise gets only a minimal one (PATH, HOME...).
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    enabled: bool = True
    risk: Risk = "confirm"
    tool_risk: dict[str, Risk] = {}
    tools: McpToolChoice = McpToolChoice()
    timeout_s: float = Field(30.0, gt=0)  # one tool call
    start_timeout_s: float = Field(20.0, gt=0)  # start, handshake and tool list

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServerSettings":
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (a local server over stdio) or `url` (streamable HTTP), not both or neither")
        if self.url is not None and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"expected an http:// or https:// address, got {self.url!r}")
        return self


def check_server_name(name: str) -> str:
    """Server names become part of tool names (`mcp_<server>_<tool>`): keep them plain."""
    if not SERVER_NAME.match(name):
        raise ValueError(f"MCP server name {name!r}: use lowercase letters, digits and _ (at most 31)")
    return name
