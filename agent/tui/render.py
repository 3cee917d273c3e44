"""Pure rendering: step events and protocol events in, rich renderables out.

Nothing here reads input or touches the terminal, so every piece can be tested by printing
it to a `Console(file=StringIO())`.
"""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.events import Note, ReplyDone, TextDelta, ThinkingDelta, ToolFinished, ToolStarted, TurnStats

MAX_ARGUMENTS = 300  # characters of a tool's arguments shown in its panel
MAX_RESULT = 400
TIER_STYLE = {"read": "cyan", "write": "yellow", "confirm": "magenta"}


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def tool_panel(started: ToolStarted, finished: ToolFinished | None = None) -> Panel:
    """A compact panel for one tool call: tool, tier, arguments, result, duration."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("args", Text(shorten(compact_json(started.arguments), MAX_ARGUMENTS)))
    if finished is None:
        grid.add_row("result", Text("running…", style="italic"))
        border, subtitle = "yellow", started.risk
    else:
        style = "" if finished.ok else "red"
        grid.add_row("result", Text(shorten(finished.result, MAX_RESULT), style=style))
        border = "green" if finished.ok else "red"
        subtitle = f"{started.risk} · {finished.duration_s:.2f} s" + ("" if finished.ok else " · failed")
    title = Text.assemble(("⚙ ", "bold"), (started.name, f"bold {TIER_STYLE.get(started.risk, '')}".strip()))
    return Panel(grid, title=title, title_align="left", subtitle=subtitle, subtitle_align="right",
                 border_style=border, box=box.ROUNDED, expand=False)


def thinking_line(text: str, *, finished: bool) -> Text:
    """Thinking, folded to one dim line: its tail while it streams, its size once done."""
    if finished:
        return Text(f"▸ thought for {len(text.split())} words", style="dim italic")
    tail = " ".join(text.split())
    tail = tail if len(tail) <= 100 else "…" + tail[-99:]  # the newest words matter while it streams
    return Text("💭 " + tail, style="dim italic")


def note_line(note: Note) -> Text:
    style = {"error": "bold red", "warning": "yellow"}.get(note.level, "dim")
    return Text(f"! {note.text}", style=style)


def notice_line(notice: Any) -> Text:
    """A reminder, what the microphone heard, or other news from the daemon, between replies."""
    if getattr(notice, "type", None) == "question":
        return Text.assemble(("🎤 asked aloud: ", "bold magenta"), notice.text, (" — /yes or /no here", "bold"))
    if getattr(notice, "type", None) == "settled":
        answer = "yes" if notice.approved else f"no ({notice.reason})"
        return Text(f"🎤 question settled by {notice.by}: {answer}", style="dim")
    if notice.kind == "voice":  # frequent and secondary: quieter than a reminder
        return Text("🎤 " + notice.text, style="dim")
    label = {"reminder": "⏰ reminder", "timer": "⏰ timer", "missed": "missed"}.get(notice.kind, notice.kind)
    return Text.assemble((f"{label}: ", "bold magenta"), notice.text)


def status_line(model: str | None, stats: TurnStats | None, stopped_by: str = "done") -> Text:
    """The line under a reply: model, speed, tokens prefilled and reused per model call (or the
    prefix cache's hit), time, how it stopped."""
    parts = [model or "model ?"]
    if stats is not None:
        if stats.tokens_per_s:
            parts.append(f"{stats.tokens_per_s:.1f} tok/s")
        parts.append(f"{stats.generated_tokens} tokens")
        if stats.per_call:
            parts.append(stats.prefill_line())
        elif stats.prefix_hit:
            parts.append(f"prefix cache hit ({stats.prefix_tokens_reused} reused)")
        else:
            parts.append("prefix cache miss")
        parts.append(f"{stats.duration_s:.2f} s")
    line = Text(" · ".join(parts), style="dim")
    if stopped_by != "done":
        line.append(f" · stopped: {stopped_by}", style="yellow")
    return line


class ReplyView:
    """The state of one streaming reply, renderable at any moment (used inside rich Live)."""

    def __init__(self, known_tools: dict[str, ToolStarted] | None = None) -> None:
        self.known_tools = dict(known_tools or {})  # calls that began in an earlier view
        self.parts: list[list] = []  # ["text", str] | ["thinking", str] | ["tool", started, finished] | ["note", Note]
        self.done: ReplyDone | None = None
        self.waiting = True  # nothing has arrived yet (queued, or the model is reading)

    def add(self, event: Any) -> None:
        """Take one step event."""
        self.waiting = False
        if isinstance(event, (TextDelta, ThinkingDelta)):
            kind = "text" if isinstance(event, TextDelta) else "thinking"
            if self.parts and self.parts[-1][0] == kind:
                self.parts[-1][1] += event.text
            else:
                self.parts.append([kind, event.text])
        elif isinstance(event, ToolStarted):
            self.parts.append(["tool", event, None])
        elif isinstance(event, ToolFinished):
            for part in self.parts:
                if part[0] == "tool" and part[1].call_id == event.call_id:
                    part[2] = event
                    break
            else:
                if event.call_id in self.known_tools:
                    self.parts.append(["tool", self.known_tools[event.call_id], event])
        elif isinstance(event, Note):
            self.parts.append(["note", event])
        elif isinstance(event, ReplyDone):
            self.done = event
            if not any(p[0] == "text" for p in self.parts) and event.text:
                self.parts.append(["text", event.text])  # a reply that did not stream

    def __rich__(self) -> RenderableType:
        items: list[RenderableType] = []
        for index, part in enumerate(self.parts):
            kind = part[0]
            if kind == "text" and part[1].strip():
                items.append(Markdown(part[1]))
            elif kind == "thinking":
                folded = self.done is not None or index < len(self.parts) - 1
                items.append(thinking_line(part[1], finished=folded))
            elif kind == "tool":
                items.append(tool_panel(part[1], part[2]))
            elif kind == "note":
                items.append(note_line(part[1]))
        if self.waiting:
            items.append(Text("…", style="dim"))
        return Group(*items)


def confirm_panel(tool: str, arguments: dict, risk: str, timeout_s: float) -> Panel:
    """The question put to the user before a confirm-tier tool runs."""
    body = Group(
        Text.assemble("agentd wants to run ", (tool, "bold magenta"), f" ({risk} tier) with:"),
        Text(json.dumps(arguments, ensure_ascii=False, indent=2, default=str)),
        Text(f"Allow it? y/N — no answer in {timeout_s:g} s means no", style="bold"),
    )
    return Panel(body, title="confirm", title_align="left", border_style="magenta", box=box.HEAVY, expand=False)


def history_view(conversation_id: str | None, messages: list[dict]) -> RenderableType:
    """A conversation's messages, one short entry each."""
    if not messages:
        return Text("no messages yet", style="dim")
    table = Table(box=box.SIMPLE, show_header=False, title=f"conversation {conversation_id or '?'}", title_style="dim")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for message in messages:
        role = message.get("role", "?")
        content = message.get("content") or ""
        if message.get("tool_calls"):
            calls = ", ".join(c.get("function", {}).get("name", "?") for c in message["tool_calls"])
            content = f"{content} [calls {calls}]".strip()
        table.add_row(role, Text(shorten(str(content), 200), style="dim" if role == "tool" else ""))
    return table


def item_list(title: str, items: Any) -> RenderableType:
    """Skills or jobs from the daemon's status, or a note that there are none to show."""
    if items is None:
        return Text(f"{title}: not available yet", style="dim")
    if not items:
        return Text(f"{title}: none", style="dim")
    table = Table(box=box.SIMPLE, show_header=False, title=title, title_style="bold", title_justify="left")
    table.add_column(no_wrap=True)
    table.add_column(style="dim")
    for item in items:
        if isinstance(item, dict):  # e.g. {"name": ..., "next_run": ...}
            name = str(item.get("name") or item.get("id") or "?")
            rest = {k: v for k, v in item.items() if k not in ("name", "id")}
            table.add_row(name, " · ".join(f"{k}: {v}" for k, v in rest.items()))
        else:
            table.add_row(str(item))
    return table


def image_panel(path: str, size_bytes: int, dimensions: tuple[int, int] | None) -> Panel:
    """A picture attached with /image, waiting for the next message."""
    shape = f"{dimensions[0]}x{dimensions[1]} · " if dimensions else ""
    body = Text.assemble((path, "bold"), f"\n{shape}{size_bytes / 1000:,.0f} kB · goes with your next message", style="")
    return Panel(body, title="image", title_align="left", border_style="magenta", expand=False)
