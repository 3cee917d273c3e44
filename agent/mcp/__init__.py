"""MCP (Model Context Protocol) servers as tool sources.

    agent.mcp.hub.McpHub  the configured servers' links; the daemon runs it as its `mcp` service
    agent.mcp.config      the `mcp_servers:` settings
    agent.mcp.link        one server kept connected (stdio or streamable HTTP)
    agent.mcp.tools       a server's tools as agentd tools (mcp_<server>_<tool>)

Nothing is imported here: the settings import `agent.mcp.config`, and the rest (jsonschema,
the mcp SDK) loads only when a server is configured.
"""
