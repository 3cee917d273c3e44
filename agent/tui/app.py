"""The chat client's input loop: read a line, stream the reply, answer confirmations.

Ctrl-C while a reply streams asks the daemon to stop that reply (twice: stop waiting for it);
Ctrl-C or Ctrl-D at the prompt leaves. One event loop (asyncio.Runner) lives for the whole
session so the connection stays open between turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent.events import Note, ToolStarted
from agent.ipc.client import Client, DaemonNotRunning, RequestFailed
from agent.ipc.protocol import ConfirmRequest, Error, Started
from agent.tui.commands import COMMANDS, SlashCommand, CommandError, message_text, parse_command
from agent.tui.render import ReplyView, confirm_panel, history_view, image_panel, item_list, notice_line, status_line

REFRESH_S = 1 / 15  # redraw at most this often while text streams


class ChatApp:
    """One chat session with the daemon."""

    def __init__(self, socket_path: Path | str, console: Console | None = None,
                 hear: Callable[[], Awaitable[str | None]] | None = None, max_image_bytes: int = 20_000_000):
        self.socket_path = socket_path
        self.console = console or Console()
        self.hear = hear  # /listen: one utterance from the microphone, as text (None: nothing heard)
        self.max_image_bytes = max_image_bytes  # vision.max_image_bytes: /image refuses bigger files here
        self.pending_images: list[bytes] = []  # /image pictures for the next message
        self.client: Client | None = None
        self.conversation_id: str | None = None
        self.thinking: bool | None = None
        self.model: str | None = None
        self.detached: str | None = None  # a request we stopped waiting for, for /stop
        self.view: ReplyView | None = None  # what Live shows now
        self._tasks: set[asyncio.Task] = set()

    def run(self) -> int:
        """Chat until /quit, Ctrl-D or Ctrl-C at the prompt; the exit code."""
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        with asyncio.Runner() as runner:
            try:
                runner.run(self._connect())
            except DaemonNotRunning as exc:
                self.console.print(Text(str(exc), style="red"))
                return 1
            try:
                return self._loop(runner)
            finally:
                runner.run(self.client.close())

    def _loop(self, runner: asyncio.Runner) -> int:
        while True:
            self._show_notices()
            try:
                line = self.console.input("[bold cyan]you ›[/] ")
            except (KeyboardInterrupt, EOFError):
                self.console.print()
                return 0
            if not line.strip():
                continue
            try:
                command = parse_command(line)
                if command is None:
                    runner.run(self._reply(message_text(line)))
                elif not runner.run(self._command(command)):
                    return 0
            except CommandError as exc:
                self.console.print(Text(str(exc), style="yellow"))
            except RequestFailed as exc:
                self.console.print(Text(f"agentd: {exc}", style="red"))
            except ConnectionError as exc:
                self.console.print(Text(f"lost the connection to agentd: {exc}", style="red"))
                return 1

    async def _connect(self) -> None:
        self.client = await Client.connect(self.socket_path)
        status = await self.client.status()
        self.model = status.get("model")
        self.console.print(Text.assemble(
            ("agentd chat", "bold"), f" · {self.model or 'model ?'} · ", ("/help", "bold"),
            " for commands · Ctrl-D to leave", style="dim",
        ))
        for problem in status.get("problems") or []:  # what agentd is living with (a damaged file, ...)
            self.console.print(Text.assemble(("problem: ", "bold red"), problem))
        warm_up = status.get("warm_up") or {}
        if warm_up.get("phase") not in (None, "ready"):  # a message sent now waits, with progress
            self.console.print(Text(f"{warm_up['text']}; you can type already", style="yellow"))

    # -- one reply --------------------------------------------------------------------------

    async def _reply(self, text: str) -> None:
        rid = self.client.new_id()
        pump = asyncio.create_task(self._pump(rid, text))
        presses = 0

        def interrupt() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                if self.view is not None:
                    self.view.add(Note(text="stopping… (Ctrl-C again to stop waiting)", level="info"))
                self._spawn(self.client.cancel(rid))
            else:
                self.detached = rid
                pump.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            await asyncio.wait([pump])
        finally:
            loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt at the prompt
        if pump.cancelled():
            self.console.print("[yellow]stopped waiting; the reply may still be running (/stop ends it)[/]")
            return
        pump.result()  # raise what went wrong, if anything

    def _show_notices(self) -> None:
        """Reminders and other news the daemon sent since the last prompt."""
        while self.client.notices:
            notice = self.client.notices.pop(0)
            self.console.print(notice_line(notice))

    async def _pump(self, rid: str, text: str) -> None:
        seen_tools: dict[str, ToolStarted] = {}
        self.view = view = ReplyView()
        images, self.pending_images = self.pending_images, []
        stream = self.client.reply(text, conversation_id=self.conversation_id, thinking=self.thinking, request_id=rid,
                                   images=images)
        live = Live(view, console=self.console, auto_refresh=False, vertical_overflow="visible")
        last_draw = 0.0
        async with contextlib.aclosing(stream):
            live.start()
            try:
                async for event in stream:
                    if isinstance(event, Started):
                        self.conversation_id = event.conversation_id or self.conversation_id
                        continue
                    if isinstance(event, ConfirmRequest):
                        live.stop()
                        approve = self._confirm(event)
                        if approve is not None:
                            await self.client.answer(rid, approve)
                        # what is on screen stays; the rest of the reply gets a fresh view
                        self.view = view = ReplyView(seen_tools)
                        live = Live(view, console=self.console, auto_refresh=False, vertical_overflow="visible")
                        live.start()
                        continue
                    if isinstance(event, Error):  # e.g. an answer that came too late
                        event = Note(text=event.message, level="warning")
                    if isinstance(event, ToolStarted):
                        seen_tools[event.call_id] = event
                    view.add(event)
                    if time.monotonic() - last_draw > REFRESH_S:
                        live.refresh()
                        last_draw = time.monotonic()
            finally:
                live.stop()  # draws the final state
        if view.done is not None:
            self.console.print(status_line(self.model, view.done.stats, view.done.stopped_by))

    def _confirm(self, event: ConfirmRequest) -> bool | None:
        """Ask y/N; None when the time ran out (the daemon denies it by itself)."""
        self.console.print(confirm_panel(event.tool, event.arguments, event.risk, event.timeout_s))
        answer = ask_yes_no(self.console, event.timeout_s)
        if answer is None:
            self.console.print(Text(f"no answer in {event.timeout_s:g} s: denied", style="yellow"))
        elif not answer:
            self.console.print("[yellow]denied[/]")
        return answer

    # -- slash commands ---------------------------------------------------------------------

    async def _command(self, command: SlashCommand) -> bool:
        """Run a slash command; False means leave."""
        name, print_ = command.name, self.console.print
        if name == "quit":
            return False
        if name == "help":
            table = Table.grid(padding=(0, 2))
            for cmd, text in COMMANDS.items():
                table.add_row(f"[bold]/{cmd}[/]", text)
            table.add_row("[bold]Ctrl-C[/]", "stop the reply that is streaming (at the prompt: leave)")
            print_(table)
        elif name == "new":
            self.conversation_id = None
            print_("[dim]new conversation[/]")
        elif name == "think":
            self.thinking = command.arg
            print_(f"[dim]thinking {'on' if command.arg else 'off'}[/]")
        elif name == "history":
            report = await self.client.history(self.conversation_id, command.arg or 20)
            print_(history_view(report.conversation_id, report.messages))
        elif name in ("skills", "jobs"):
            status = await self.client.status()
            print_(item_list(name, status.get(name)))
        elif name == "listen":
            if self.hear is None:
                print_("[yellow]no microphone in this chat window[/]")
                return True
            print_("[dim]🎤 listening… say your message[/]")
            text = await self.hear()
            if not text:
                print_("[yellow]heard nothing to send[/]")
            else:
                print_(Text.assemble(("you (spoken) › ", "bold cyan"), text))
                await self._reply(text)
        elif name == "image":
            from agent.images import ImageError, image_dimensions, read_image_file

            try:
                data = read_image_file(command.arg, max_bytes=self.max_image_bytes)
            except ImageError as exc:
                print_(Text(str(exc), style="yellow"))
                return True
            self.pending_images.append(data)
            print_(image_panel(command.arg, len(data), image_dimensions(data)))
        elif name in ("yes", "no"):
            await self._answer_question(name == "yes")
        elif name == "stop":
            if self.detached is None:
                print_("[dim]nothing to stop (Ctrl-C stops a reply while it streams)[/]")
            else:
                stopped = await self.client.stop(self.detached)
                print_("[dim]stopped[/]" if stopped else "[dim]it had already finished[/]")
                self.detached = None
        return True

    async def _answer_question(self, approve: bool) -> None:
        """Answer the newest question agentd asked aloud; the first answer, spoken or typed, wins."""
        # The connection is read only while the loop runs, not while the prompt waits: a
        # round trip first, so every question asked meanwhile has arrived.
        await self.client.status()
        self._show_notices()
        if not self.client.questions:
            self.console.print("[dim]no question is waiting for an answer[/]")
            return
        question = list(self.client.questions.values())[-1]
        await self.client.answer(question.id, approve)
        await self.client.status()  # the daemon has handled the answer; its `settled` has arrived
        self._show_notices()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)


def ask_yes_no(console: Console, timeout: float) -> bool | None:
    """Read y/N from the terminal; None after `timeout` seconds. Ctrl-C or Ctrl-D mean no."""
    console.print("[bold]y/N ›[/] ", end="")
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the loop is blocked: let Ctrl-C through
    try:
        line = read_line(timeout)
    except KeyboardInterrupt:
        line = ""
    finally:
        signal.signal(signal.SIGINT, previous)
    if line is None:
        console.print()
        return None
    return line.strip().lower() in ("y", "yes")


def read_line(timeout: float, stream: Any = None) -> str | None:
    """One line from a terminal within `timeout` seconds (None if none came); no timeout on a pipe."""
    stream = stream or sys.stdin
    if not stream.isatty():
        return stream.readline()
    ready, _, _ = select.select([stream.fileno()], [], [], timeout)
    if not ready:
        return None
    return os.read(stream.fileno(), 4096).decode(errors="replace")  # a terminal hands over one line


def run_chat(socket_path: Path | str, console: Console | None = None,
             hear: Callable[[], Awaitable[str | None]] | None = None, max_image_bytes: int = 20_000_000) -> int:
    """`agentd chat`: the interactive client; its exit code."""
    return ChatApp(socket_path, console, hear, max_image_bytes=max_image_bytes).run()
