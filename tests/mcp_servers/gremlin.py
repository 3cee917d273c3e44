"""An MCP server the tests start: tools that answer, fail, hang or kill the server.

Run as `python gremlin.py [stdio | http PORT]`. With GREMLIN_STARTS set to a file, each start
appends a line to it (tests count restarts).
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("gremlin")


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Say the text back, `times` times."""
    return " ".join([text] * times)


@server.tool()
def refuse(reason: str) -> str:
    """Fail the way a tool reports an error to MCP clients (isError)."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "never"


@server.tool()
def die() -> str:
    """Kill the whole server process mid-call."""
    os._exit(3)


if __name__ == "__main__":
    if os.environ.get("GREMLIN_STARTS"):
        with open(os.environ["GREMLIN_STARTS"], "a") as starts:
            starts.write("start\n")
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
