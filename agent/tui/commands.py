"""Slash commands of the chat client: parsing only, no screen work."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS: dict[str, str] = {
    "new": "start a new conversation",
    "history": "show this conversation's messages (/history N for the last N)",
    "think": "on|off: let the model think before it answers",
    "skills": "list the enabled skills",
    "jobs": "list the scheduled jobs",
    "stop": "stop a reply you stopped waiting for",
    "image": "PATH: attach a picture to your next message (needs the vision extra)",
    "listen": "push-to-talk: say one message into the microphone (no wake phrase)",
    "yes": "answer yes to the question agentd asked aloud (a voice command that needs a confirmation)",
    "no": "answer no to that question",
    "help": "this list",
    "quit": "leave the chat (the daemon keeps running)",
}
ALIASES = {"exit": "quit", "q": "quit", "?": "help", "h": "help"}


class CommandError(ValueError):
    """A slash command that cannot be run as typed."""


@dataclass(frozen=True)
class SlashCommand:
    name: str
    arg: str | bool | int | None = None


def parse_command(line: str) -> SlashCommand | None:
    """A SlashCommand if the line is a slash command, None if it is a message."""
    line = line.strip()
    if not line.startswith("/") or line.startswith("//"):
        return None  # "//..." lets a message start with a slash
    word, _, rest = line[1:].partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    rest = rest.strip()
    if name not in COMMANDS:
        raise CommandError(f"unknown command /{word}; /help lists them")
    if name == "think":
        if rest.lower() not in ("on", "off"):
            raise CommandError(f"/think needs on or off, got {rest or 'nothing'!r}")
        return SlashCommand("think", rest.lower() == "on")
    if name == "history" and rest:
        if not rest.isdigit() or not 1 <= int(rest) <= 1000:
            raise CommandError(f"/history takes a number of messages from 1 to 1000, got {rest!r}")
        return SlashCommand("history", int(rest))
    if name == "image":
        if not rest:
            raise CommandError("/image needs the path of a picture, e.g. /image ~/Pictures/boiler.jpg")
        return SlashCommand("image", rest)
    if rest:
        raise CommandError(f"/{name} takes no argument, got {rest!r}")
    return SlashCommand(name)


def message_text(line: str) -> str:
    """The message to send for a non-command line ("//x" sends "/x")."""
    line = line.strip()
    return line[1:] if line.startswith("//") else line
