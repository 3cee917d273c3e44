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

from agent.events import ReplyDone, TextDelta, ThinkingDelta, ToolFinished, ToolStarted, TurnStats
from agent.tools import build_tool


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

    async def respond(self, text, *, conversation_id=None, who="chat", thinking=None, confirm=None, cancel=None):
        """One scripted turn; yields step events and ends with one ReplyDone."""
        self.calls.append({"text": text, "who": who, "conversation_id": conversation_id, "thinking": thinking})
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
