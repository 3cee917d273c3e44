"""All configured MCP servers together: their links, their tools, their part of `status`.

The daemon runs `McpHub.serve` as its `mcp` service. Each server's link connects on its own,
so a slow or broken server holds up neither the daemon nor the other servers; whenever a
server's tools come or go, `on_change` is called and the daemon gives the model the new tool
list (and rebuilds the prefilled prompt that holds it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from agent.mcp.link import ServerLink
from agent.tools import Tool

log = logging.getLogger(__name__)


class McpHub:
    """The links to the MCP servers of the `mcp_servers:` settings."""

    def __init__(self, servers: dict[str, Any], on_change: Callable[[], None] = lambda: None, **link_options: Any):
        self.on_change = on_change
        self.links = {name: ServerLink(name, config, self._changed, **link_options)
                      for name, config in servers.items() if config.enabled}

    def __bool__(self) -> bool:
        return bool(self.links)

    def tools(self) -> list[Tool]:
        """The tools of the servers that are up, server by server in config order."""
        return [t for link in self.links.values() for t in link.tools]

    async def serve(self) -> None:
        """Keep every server connected until cancelled."""
        tasks = [asyncio.create_task(link.serve(), name=f"mcp {name}") for name, link in self.links.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_up(self, timeout_s: float) -> None:
        """Wait until no server is still starting (for doctor and tests); never raises."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(link.state == "starting" for link in self.links.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    def status(self) -> dict:
        return {"mcp_servers": {name: link.status() for name, link in self.links.items()}}

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception:
            log.exception("could not apply the MCP servers' new tool list")
