"""The turn queue: requests from every door, one worker, each turn's events back to its asker.

Turns run one at a time (there is one model), taken by priority — voice before chat before
schedule — and first come, first served within a priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from pydantic import BaseModel

from agent.events import Note, ReplyDone
from agent.ipc import protocol as p
from agent.ipc.server import Connection

log = logging.getLogger(__name__)

# Someone speaking waits least: the microphone and Home Assistant's satellites (Wyoming) first.
PRIORITY = {"voice": 0, "wyoming": 0, "chat": 1, "schedule": 2}
Confirm = Callable[[Any, dict], Awaitable[bool]]
RunTurn = Callable[["TurnRequest"], AsyncIterator[Any]]  # a request's step events, ending in ReplyDone


def priority_of(who: str) -> int:
    """Queue priority of a door ("schedule:backup" counts as "schedule"); lower runs first."""
    return PRIORITY.get(who.split(":", 1)[0], PRIORITY["chat"])



@dataclass(order=True)
class TurnRequest:
    """One queued or running turn and where its events go."""

    priority: int
    seq: int
    id: str = field(compare=False)
    text: str = field(compare=False)
    who: str = field(compare=False)
    conversation_id: str | None = field(compare=False, default=None)
    thinking: bool | None = field(compare=False, default=None)
    explain: bool = field(compare=False, default=False)
    images: tuple = field(compare=False, default=())  # agent.llm.types.Picture, for this turn only
    conn: Connection | None = field(compare=False, default=None)  # None: an in-process door
    outbox: asyncio.Queue | None = field(compare=False, default=None)
    confirm: Confirm | None = field(compare=False, default=None)  # in-process doors may ask someone
    # Instead of an agent turn: job(cancel) yields step events ending with ReplyDone. The API's
    # pass-through generation uses it, so it too waits its turn for the one model.
    job: Callable[[asyncio.Event], Any] | None = field(compare=False, default=None)
    state: str = field(compare=False, default="queued")  # queued | running | done
    cancel: asyncio.Event = field(compare=False, default_factory=asyncio.Event)
    cancel_reason: str = field(compare=False, default="")  # why `cancel` was set: cancelled, client gone ...
    task: asyncio.Task | None = field(compare=False, default=None)

    @property
    def key(self) -> tuple:
        return (self.conn.number if self.conn else "local", self.id)

    def emit(self, event: Any) -> None:
        """Send a step event (or a protocol event) to whoever asked."""
        if self.conn is not None:
            self.conn.send(event if isinstance(event, BaseModel) else p.event_frame(self.id, event))
        elif self.outbox is not None and not isinstance(event, BaseModel):
            self.outbox.put_nowait(event)


class TurnQueue:
    """The turns waiting and running, and the single worker that runs them.

    It knows nothing of agents or confirmations: `run_turn(request)` (the daemon's) streams a
    turn's events, and a turn that ignores its cancel is cut off after `cancel_grace_s`."""

    def __init__(self, run_turn: RunTurn, *, cancel_grace_s: float):
        self.run_turn = run_turn
        self.cancel_grace_s = cancel_grace_s
        self.queue: asyncio.PriorityQueue[TurnRequest] = asyncio.PriorityQueue()
        self.requests: dict[tuple, TurnRequest] = {}
        self.current: TurnRequest | None = None
        self._seq = itertools.count()
        self.last_stats: dict | None = None

    def put(self, request: TurnRequest) -> None:
        """Queue a turn; RequestError if its id is taken by a live request of the same asker."""
        if request.key in self.requests:
            raise p.RequestError(f"request id {request.id!r} is already in use", request.id, "send")
        request.seq = next(self._seq)
        self.requests[request.key] = request
        self.queue.put_nowait(request)
        log.info("queued %s from %s (%s; %d waiting)", request.id, request.who, request.conn or "local", self.waiting())

    def waiting(self) -> int:
        """How many turns wait behind the running one."""
        return sum(1 for r in self.requests.values() if r.state == "queued")

    def cancel(self, key: tuple, reason: str = "cancelled") -> bool:
        """Stop a running turn or drop a queued one; False if there is no such request."""
        request = self.requests.get(key)
        if request is None:
            return False
        log.info("cancelling %s (%s, %s)", request.id, request.state, reason)
        if request.state == "queued":
            self._finish(request)
            request.emit(ReplyDone(text="", stopped_by="cancelled"))
        elif request.state == "running":
            request.cancel_reason = reason  # a confirmation it waits on ends with this reason
            request.cancel.set()
            # The agent stops at its next step; one that does not is cut off after the grace.
            asyncio.get_running_loop().call_later(self.cancel_grace_s, self._cut_off, request)
        return True

    def _cut_off(self, request: TurnRequest) -> None:
        if request.state == "running" and request.task is not None and not request.task.done():
            log.warning("turn %s ignored its cancel for %.1f s; cutting it off", request.id, self.cancel_grace_s)
            request.task.cancel()

    def _finish(self, request: TurnRequest) -> None:
        request.state = "done"
        self.requests.pop(request.key, None)

    async def work(self) -> None:
        """Run queued turns one at a time, forever."""
        while True:
            request = await self.queue.get()
            if request.state != "queued":
                continue  # cancelled while it waited
            request.state = "running"
            self.current = request
            request.task = asyncio.create_task(self._run(request), name=f"turn {request.id}")
            try:
                await asyncio.wait([request.task])
            except asyncio.CancelledError:
                request.task.cancel()
                raise
            finally:
                self.current = None
                self._finish(request)

    async def _run(self, request: TurnRequest) -> None:
        """One turn: stream the agent's events to the asker; always end with one ReplyDone."""
        request.emit(p.Started(v=p.VERSION, id=request.id, conversation_id=request.conversation_id))
        done: ReplyDone | None = None
        try:
            stream = self.run_turn(request)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if isinstance(event, ReplyDone):
                        done = event
                        break
                    request.emit(event)
        except asyncio.CancelledError:
            done = ReplyDone(text="", stopped_by="cancelled")
        except Exception as exc:  # a bug in a turn must not stop the daemon
            log.exception("turn %s failed", request.id)
            request.emit(Note(text=f"The turn failed: {type(exc).__name__}: {exc}", level="error"))
            done = ReplyDone(text="", stopped_by="error")
        if done is None:
            log.error("turn %s ended without a ReplyDone", request.id)
            done = ReplyDone(text="", stopped_by="error")
        self.last_stats = {"stopped_by": done.stopped_by, **done.stats.__dict__}
        self._finish(request)  # before the asker hears ReplyDone, so it may reuse the id at once
        request.emit(done)
        log.info("turn %s done (%s)", request.id, done.stopped_by)
