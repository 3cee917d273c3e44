"""The rich chat client (`agentd chat`): the only place that draws on the terminal with rich.

`render` turns events into renderables (pure, testable), `commands` parses slash commands,
`app` runs the input loop.
"""

from agent.tui.app import ChatApp, run_chat
from agent.tui.commands import SlashCommand, CommandError, parse_command
from agent.tui.render import ReplyView, status_line, tool_panel

__all__ = ["ChatApp", "SlashCommand", "CommandError", "ReplyView", "parse_command", "run_chat", "status_line", "tool_panel"]
