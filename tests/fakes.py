"""A scripted stand-in for `agent.turn.Agent`, following its `respond()` contract.

What it does depends on the first word of the text, so a test (or a subprocess) can drive it
through the socket:

    hold        waits until `agent.release` is set (or the turn is cancelled)
    slow N      N text deltas, `delay` seconds apart, honouring cancel
    think       some thinking, then a short reply
    lookup      a read-tier tool call, then a reply
    unlock      a confirm-tier tool call: awaits confirm(tool, arguments)
    stubborn    ignores cancel (sleeps a long time)
    boom        raises RuntimeError
    anything    echoed back word by word
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.daemon.core import Daemon
from agent.events import ReplyDone, TextDelta, ThinkingDelta, ToolFinished, ToolStarted, TurnStats
from agent.ipc import status_sync
from agent.tools import build_tool

SERVE_FAKE = Path(__file__).resolve().parent / "serve_fake.py"


def house_lookup(room: str) -> str:
    """Look up the state of a room.

    Args:
        room: The room's name.
    """
    return f"{room}: lights off"


def unlock_door(door: str) -> str:
    """Unlock a door.

    Args:
        door: Which door.
    """
    return f"{door} unlocked"


LOOKUP = build_tool(house_lookup)
UNLOCK = build_tool(unlock_door, risk="confirm")
STATS = TurnStats(prompt_tokens=12, generated_tokens=5, model_calls=1, tokens_per_s=42.5,
                  prefix_hit=True, prefix_tokens_reused=800, duration_s=0.1)


class FakeAgent:
    """Scripted turns with configurable delays, tool calls and confirmation."""

    def __init__(self, *, delay: float = 0.0):
        self.delay = delay
        self.calls: list[dict] = []
        self.release = asyncio.Event()
        self.confirmed: list[bool] = []
        self.active = self.max_active = 0  # turns running at once (the daemon must keep it at 1)

    async def respond(self, text, *, conversation_id=None, who="chat", thinking=None, confirm=None, cancel=None, explain=False,
                      images=None):
        """One scripted turn; yields step events and ends with one ReplyDone."""
        self.calls.append({"text": text, "who": who, "conversation_id": conversation_id, "thinking": thinking})
        if images:  # says what arrived, so a door's test sees the pictures' sizes after the daemon shrank them
            seen = ", ".join(f"{p.width}x{p.height}" for p in images)
            yield TextDelta(text=f"I see {seen}.")
            yield ReplyDone(text=f"I see {seen}.", stats=STATS)
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            async for event in self._turn(text, who=who, confirm=confirm, cancel=cancel):
                yield event
        finally:
            self.active -= 1

    async def _turn(self, text, *, who, confirm, cancel):
        cancel = cancel or asyncio.Event()
        word, _, rest = text.partition(" ")
        reply: list[str] = []

        def done(stopped_by: str = "done") -> ReplyDone:
            return ReplyDone(text="".join(reply).strip(), stopped_by=stopped_by, stats=STATS)

        if word == "boom":
            raise RuntimeError("boom")
        if word == "hold":
            while not self.release.is_set():
                if cancel.is_set():
                    yield done("cancelled")
                    return
                await asyncio.sleep(0.005)
            reply.append("released")
            yield TextDelta(text="released")
        elif word == "stubborn":
            await asyncio.sleep(3600)
        elif word == "slow":
            for i in range(int(rest or 10)):
                if cancel.is_set():
                    yield done("cancelled")
                    return
                await asyncio.sleep(self.delay or 0.01)
                reply.append(f"tick{i} ")
                yield TextDelta(text=f"tick{i} ")
        elif word == "think":
            for piece in ("Let me ", "think about ", "this."):
                yield ThinkingDelta(text=piece)
            reply.append("Thought it through.")
            yield TextDelta(text="Thought it through.")
        elif word == "lookup":
            yield ToolStarted(call_id="c1", name=LOOKUP.name, arguments={"room": "kitchen"}, risk=LOOKUP.risk)
            yield ToolFinished(call_id="c1", name=LOOKUP.name, result="kitchen: lights off", ok=True, duration_s=0.01)
            reply.append("The kitchen lights are off.")
            yield TextDelta(text=reply[-1])
        elif word == "unlock":
            arguments = {"door": rest or "front"}
            yield ToolStarted(call_id="c2", name=UNLOCK.name, arguments=arguments, risk=UNLOCK.risk)
            approved = bool(confirm and await confirm(UNLOCK, arguments))
            self.confirmed.append(approved)
            if approved:
                yield ToolFinished(call_id="c2", name=UNLOCK.name, result=unlock_door(**arguments), ok=True, duration_s=0.01)
                reply.append("Unlocked.")
            else:
                yield ToolFinished(call_id="c2", name=UNLOCK.name, result="Denied: not confirmed.", ok=False, duration_s=0.0)
                reply.append("I did not unlock it.")
            yield TextDelta(text=reply[-1])
        else:
            for piece in text.split(" "):
                await asyncio.sleep(self.delay)
                reply.append(piece + " ")
                yield TextDelta(text=piece + " ")
        yield done("cancelled" if cancel.is_set() else "done")


@pytest.fixture
def home():
    """A short private folder: AF_UNIX socket paths must stay under ~104 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ad-"))
    if len(str(path)) > 60:  # a long $TMPDIR; /tmp is short on every Unix
        shutil.rmtree(path)
        path = Path(tempfile.mkdtemp(prefix="ad-", dir="/tmp"))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def spawn(home: Path, *args: str) -> tuple[subprocess.Popen, dict]:
    """Start tests/serve_fake.py on `home` as a real process; wait until it answers."""
    with open(home / "stderr.txt", "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen([sys.executable, str(SERVE_FAKE), str(home), *args], stderr=log)
    deadline = time.monotonic() + 20
    while True:
        try:
            return proc, status_sync(home / "agentd.sock", timeout=2)
        except ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((home / "stderr.txt").read_text()) from None
            time.sleep(0.05)


# -- running a daemon inside a test's event loop ----------------------------------------------


def run(coro, timeout=30):
    """Run a test's coroutine with a time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def running(daemon):
    """Serve the daemon in this loop for the body of the block."""
    task = asyncio.create_task(daemon.serve())
    await until(lambda: daemon.server._server is not None or task.done())
    if task.done():
        task.result()
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


async def until(condition, timeout=5.0):
    """Wait until condition() is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


async def collect(client, text, **options):
    """Every event of one reply."""
    return [event async for event in client.reply(text, **options)]


async def drain(events):
    """Every event of an in-process turn."""
    return [event async for event in events]


def make(home, agent=None, **options):
    """A Daemon around a FakeAgent, quick to give up on a stuck turn."""
    options.setdefault("cancel_grace_s", 0.3)
    return Daemon(agent=agent or FakeAgent(), home=home, **options)


class SlowTurn:
    """A voice turn that streams a long reply (a word every 10 ms, 30 s in all), for stop words;
    `ended_at` is when it stopped, cut short or not."""

    def __init__(self):
        self.ended_at: float | None = None

    async def __call__(self, text):
        try:
            for i in range(3000):
                await asyncio.sleep(0.01)
                yield TextDelta(text=f"word{i} ")
            yield ReplyDone(text="...", stopped_by="done", stats=None)
        finally:
            self.ended_at = time.perf_counter()
