"""agentd: an offline home agent. This module is the stable API for skill authors."""

from agent.tools import (
    Clock,
    FixedClock,
    SystemClock,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    tool,
)

__all__ = [
    "Clock",
    "FixedClock",
    "SystemClock",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "tool",
]
