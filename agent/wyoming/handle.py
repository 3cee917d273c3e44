"""The agent as Home Assistant's conversation agent: a `transcript` in, one turn, `handled` out.

Home Assistant names each conversation (its `conversation_id`, in the transcript's
`context`) and sends the same id for a follow-up; agentd keeps its own conversation for each,
so the turn sees what was said before. Nobody can be asked to confirm over Wyoming, so a
confirm-tier tool runs only when `wyoming.allow_confirm` names it; the audit row says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Iterable

from wyoming.asr import Transcript
from wyoming.handle import Handled, NotHandled

from agent.events import ReplyDone, ToolFinished
from agent.daemon.questions import Answer

log = logging.getLogger(__name__)

WHO = "wyoming"
KEEP_CONVERSATIONS = 256


class Conversations:
    """Home Assistant's conversation ids -> agentd's, the most recent `keep` of them.

    Home Assistant forgets a conversation after a few idle minutes, so an id it has not sent
    for a long while is dropped rather than kept forever."""

    def __init__(self, new_conversation: Callable[[str], str] | None, keep: int = KEEP_CONVERSATIONS):
        self.new_conversation, self.keep = new_conversation, keep
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = asyncio.Lock()  # two requests for one new id must not start two conversations

    async def lookup(self, theirs: str | None) -> str | None:
        """agentd's conversation for Home Assistant's id (a new one the first time)."""
        if self.new_conversation is None:
            return None
        async with self._lock:
            ours = self._ids.get(theirs) if theirs else None
            if ours is None:
                ours = await asyncio.to_thread(self.new_conversation, WHO)
            if theirs:
                self._ids[theirs] = ours
                self._ids.move_to_end(theirs)
                while len(self._ids) > self.keep:
                    self._ids.popitem(last=False)
            return ours


def allow_listed(allow: Iterable[str]) -> Callable[[Any, dict], Awaitable[Answer]]:
    """The confirm policy of a Wyoming turn: yes only for the confirm-tier tools `allow` names."""
    allowed = frozenset(allow)

    async def confirm(tool: Any, arguments: dict) -> Answer:
        if tool.name in allowed:
            return Answer(approved=True, by=WHO, reason="allowed by wyoming.allow_confirm")
        return Answer(approved=False, by=WHO, reason="nobody to ask over wyoming (not in wyoming.allow_confirm)")

    return confirm


async def handle_transcript(daemon: Any, conversations: Conversations, transcript: Transcript,
                            allow: Iterable[str]) -> Handled | NotHandled:
    """Run the transcript as one turn on the daemon's queue; its reply as `handled`.

    The answer's context carries Home Assistant's conversation id back, as its own agents do."""
    context = transcript.context or {}
    theirs = context.get("conversation_id")
    ours = await conversations.lookup(theirs)
    done: ReplyDone | None = None
    denied: list[str] = []
    # thinking off: someone is usually standing at a satellite, waiting to hear the answer.
    async for event in daemon.submit(transcript.text, who=WHO, conversation_id=ours, thinking=False,
                                     confirm=allow_listed(allow)):
        if isinstance(event, ToolFinished) and event.outcome == "denied":
            denied.append(event.name)
        elif isinstance(event, ReplyDone):
            done = event
    answer_context = {"conversation_id": theirs} if theirs else None
    if denied:
        log.info("wyoming: %s denied in conversation %s (not in wyoming.allow_confirm)", ", ".join(denied), theirs)
    if done is None or done.stopped_by in ("error", "cancelled"):
        text = done.text if done is not None and done.text else "agentd could not answer."
        return NotHandled(text=text, context=answer_context)
    return Handled(text=done.text, context=answer_context)
