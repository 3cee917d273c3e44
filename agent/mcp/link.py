"""One MCP server, kept connected: start it (or reach it), list its tools, notice when it
dies, and start again with a growing wait.

A `ServerLink.serve()` runs for the daemon's life as one task, so the SDK's context managers
(which hold anyio task groups) open and close in the same task. Tool calls come from turn
tasks on the same event loop and share the open session.

What users of other MCP clients complain about, and what happens here instead:
- tools silently missing after a slow start: the link's state (`starting`, `up`, `down` with
  the reason, and when it tries again) is in `agentd status` and `agentd doctor`;
- a dead session that needs a restart: a failed ping or a broken call ends the session and
  the link reconnects by itself;
- `isError` results ignored: they reach the model as errors (agent.mcp.tools.result_text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from agent.mcp.config import McpServerSettings
from agent.mcp.tools import McpTool, to_tools
from agent.tools import ToolError

log = logging.getLogger(__name__)

PING_EVERY_S = 15.0
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0


class ServerLink:
    """The connection to one configured MCP server and the tools it offers while it is up."""

    def __init__(self, name: str, config: McpServerSettings, on_change: Callable[[], None] = lambda: None,
                 *, ping_every_s: float = PING_EVERY_S, retry_min_s: float = RETRY_MIN_S, log_dir: Path | None = None):
        self.name = name
        self.log_dir = log_dir  # a local server's stderr goes to log_dir/mcp-NAME.log
        self.config = config
        self.on_change = on_change
        self.ping_every_s = ping_every_s
        self.retry_min_s = retry_min_s
        self.state = "starting"
        self.error = ""
        self.tools: list[McpTool] = []
        self.problems: list[str] = []
        self.connects = 0
        self.retry_at: float | None = None
        self._session: Any = None
        self._broken = asyncio.Event()

    async def serve(self) -> None:
        """Until cancelled: connect, serve calls, and after a failure wait and connect again."""
        wait = self.retry_min_s
        while True:
            try:
                await self._connected_once()
                wait = self.retry_min_s  # it was up: the next failure starts the waits over
            except asyncio.CancelledError:
                self._down("agentd is stopping")
                raise
            except BaseException as exc:  # anyio wraps a transport's failure in an ExceptionGroup
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._down(_describe(exc))
                log.warning("MCP server %s is down: %s; trying again in %g s", self.name, self.error, wait)
            self.retry_at = time.time() + wait
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)

    async def call(self, tool: str, arguments: dict) -> Any:
        """One tool call on the open session; ToolError when the server is not up or the call
        breaks the connection (which then starts over)."""
        session = self._session
        if session is None or self.state != "up":
            raise ToolError(f"the MCP server {self.name} is not available ({self.error or self.state})")
        try:
            return await session.call_tool(tool, arguments)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as exc:
            if not _is_protocol_error(exc):
                self._broken.set()  # the transport failed: reconnect
            raise ToolError(f"the MCP server {self.name} failed: {_describe(exc)}") from None

    def status(self) -> dict:
        """This server's line in `agentd status`."""
        line = {"state": self.state, "tools": [t.name for t in self.tools], "connects": self.connects}
        if self.error:
            line["error"] = self.error
        if self.state == "down" and self.retry_at:
            line["retry_in_s"] = max(0, round(self.retry_at - time.time(), 1))
        if self.problems:
            line["problems"] = self.problems
        return line

    async def _connected_once(self) -> None:
        self.state, self._broken = "starting", asyncio.Event()
        async with self._open() as (read, write):
            from mcp import ClientSession

            async with ClientSession(read, write) as session:
                async with asyncio.timeout(self.config.start_timeout_s):
                    await session.initialize()
                    listed = await _all_tools(session)
                self.tools, self.problems = to_tools(self.name, self.config, listed, self)
                for problem in self.problems:
                    log.warning("%s", problem)
                self._session, self.state, self.error = session, "up", ""
                self.connects += 1
                log.info("MCP server %s is up: %d tools", self.name, len(self.tools))
                self.on_change()
                try:
                    await self._keep_alive(session)
                finally:
                    self._session = None

    async def _keep_alive(self, session: Any) -> None:
        """Return (to reconnect) when a call broke the transport or a ping goes unanswered."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_every_s):
                    await self._broken.wait()
                    raise ConnectionError("a tool call broke the connection")
            async with asyncio.timeout(self.config.start_timeout_s):
                await session.send_ping()

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.config.command is not None:
            from mcp import StdioServerParameters
            from mcp.client.stdio import get_default_environment, stdio_client

            params = StdioServerParameters(command=self.config.command, args=list(self.config.args),
                                           env={**get_default_environment(), **self.config.env}, cwd=self.config.cwd)
            with self._errlog() as errlog:
                async with stdio_client(params, errlog=errlog) as streams:
                    yield streams[0], streams[1]
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            async with httpx2.AsyncClient(headers=dict(self.config.headers)) as client:
                async with streamable_http_client(self.config.url, http_client=client) as streams:
                    yield streams[0], streams[1]

    def _errlog(self) -> Any:
        """Where a local server's stderr goes: its own log file, or agentd's stderr."""
        if self.log_dir is None:
            return contextlib.nullcontext(sys.stderr)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"mcp-{self.name}.log", "a", encoding="utf-8")

    def _down(self, why: str) -> None:
        had_tools = bool(self.tools)
        self.state, self.error, self.tools, self._session = "down", why, [], None
        if had_tools:
            self.on_change()


async def _all_tools(session: Any) -> list[Any]:
    """Every page of the server's tool list."""
    from mcp.types import PaginatedRequestParams

    listed, cursor = [], None
    while True:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        listed.extend(page.tools)
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            return listed


def _is_protocol_error(exc: BaseException) -> bool:
    """An error the server answered with (the session is fine), not a broken transport."""
    from mcp import MCPError

    return isinstance(exc, MCPError)


def _describe(exc: BaseException) -> str:
    """The innermost useful message of what went wrong (anyio nests them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
