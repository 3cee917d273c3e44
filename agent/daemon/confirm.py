"""Confirmation of confirm-tier tools: ask whoever started the turn, and only them.

Anything but a clear yes is a no: no answer in time, the client gone, the turn cancelled, or
a scheduled job with nobody to ask. Every decision is logged and handed to an audit hook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from agent.ipc import protocol as p
from agent.daemon.turnqueue import TurnRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ConfirmDecision:
    """One answer to "may this tool run?", for the audit log."""

    request_id: str
    who: str
    conversation_id: str | None
    tool: str
    arguments: dict
    risk: str
    approved: bool
    reason: str  # approved | denied | timeout | client gone | non-interactive | cancelled | no one to ask
    waited_s: float

    def __bool__(self) -> bool:
        # The executor reads the answer as a bool and its `reason` into the call's audit row.
        return self.approved


def interactive(who: str) -> bool:
    """Whether someone can be asked to confirm (nobody watches a scheduled job)."""
    return not who.startswith("schedule")


def json_safe(value: Any) -> Any:
    """A value as plain JSON (a date or a Path becomes text)."""
    return json.loads(json.dumps(value, default=str))


class Confirmer:
    """Puts confirm-tier tool calls to the person who asked for the turn."""

    def __init__(self, timeout_s: float, audit: Callable[[ConfirmDecision], None] | None = None):
        self.timeout_s = timeout_s
        self.audit = audit or (lambda decision: None)
        self.pending: dict[tuple, asyncio.Future] = {}  # a client's answer awaited, by request key

    async def ask(self, request: TurnRequest, tool: Any, arguments: dict) -> ConfirmDecision:
        """Whether `tool` may run with `arguments` in this turn (true when approved), and why."""
        started = time.monotonic()
        arguments = json_safe(arguments)
        if request.cancel.is_set():
            approved, reason = False, "cancelled"
        elif request.conn is None and request.confirm is not None:
            # An in-process door brings its own policy (a schedule's `allow` list, say).
            answer = await request.confirm(tool, arguments)
            approved = bool(answer)
            reason = getattr(answer, "reason", "") or ("approved" if approved else "denied")
        elif not interactive(request.who):
            approved, reason = False, "non-interactive"
        elif request.conn is None:
            approved, reason = False, "no one to ask"
        elif request.conn.closed:
            approved, reason = False, "client gone"
        else:
            approved, reason = await self._ask_client(request, tool, arguments)
        decision = ConfirmDecision(
            request_id=request.id, who=request.who, conversation_id=request.conversation_id, tool=tool.name,
            arguments=arguments, risk=tool.risk, approved=approved, reason=reason,
            waited_s=round(time.monotonic() - started, 3),
        )
        log.info("confirm %s%s for %s: %s (%s)", tool.name, json.dumps(arguments), request.id,
                 "yes" if approved else "no", reason)
        try:
            self.audit(decision)
        except Exception:
            log.exception("could not audit %s", decision)
        return decision

    def answer(self, request: TurnRequest | None, frame: p.Confirm) -> None:
        """Take a client's answer; RequestError if nothing is waiting for one."""
        waiting = self.pending.get(request.key) if request is not None else None
        if waiting is None or waiting.done():
            raise p.RequestError(f"no confirmation is waiting for request {frame.id!r} (too late?)", frame.id, "confirm")
        waiting.set_result((frame.approve, "approved" if frame.approve else "denied"))

    async def _ask_client(self, request: TurnRequest, tool: Any, arguments: dict) -> tuple[bool, str]:
        """The client's answer; a no when the time is up or the turn is stopped meanwhile."""
        answer = self.pending[request.key] = asyncio.get_running_loop().create_future()
        stopped = asyncio.ensure_future(request.cancel.wait())
        request.conn.send(p.ConfirmRequest(
            v=p.VERSION, id=request.id, tool=tool.name, arguments=arguments, risk=tool.risk, timeout_s=self.timeout_s,
        ))
        try:
            await asyncio.wait([answer, stopped], timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                return answer.result()
            return (False, request.cancel_reason or "cancelled") if stopped.done() else (False, "timeout")
        finally:
            stopped.cancel()
            self.pending.pop(request.key, None)
