"""THE executor: every door (model turn, phrase path, schedule, eval) runs a tool through it.

One place decides how a tool call goes, so the guarantees are the same whoever asked:
the tool must exist, its arguments are validated and coerced against its schema, a
confirm-tier tool runs only when the door's `approve` hook says yes, it gets a time limit
and can be cancelled, its output is capped, and every attempt — refused, crashed or cut
short included — leaves exactly one audit row. The caller gets a structured `ActionOutcome`;
nobody learns what happened by reading the result text.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

from agent.events import ToolFinished, ToolStarted
from agent.tools import SystemClock, Tool, ToolArgumentError, ToolContext, ToolError, ToolResult

log = logging.getLogger(__name__)

Status = Literal["ok", "error", "crashed", "denied", "invalid", "timeout", "cancelled"]
STATUSES: tuple[str, ...] = ("ok", "error", "crashed", "denied", "invalid", "timeout", "cancelled")

# `approve(tool, arguments)`: True (or an object whose truth is the answer and whose `reason`
# says why, as the daemon's ConfirmDecision) lets a confirm-tier tool run.
Approve = Callable[[Tool, dict], Awaitable[Any]]

DENIED_TEXT = "Denied: the user did not confirm this action, so it was not done."


@dataclass(frozen=True, kw_only=True)
class Action:
    """One request to run a tool, as a door wrote it (arguments not yet checked)."""

    tool: str
    arguments: Any = None
    who: str = "cli"
    conversation_id: str | None = None
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    source: str = ""  # for the audit row: "phrase 'turn on {device}'", "job 7" ...
    problem: str | None = None  # the door already knows it cannot run (an unparsable call)


@dataclass(frozen=True, kw_only=True)
class ActionOutcome:
    """How one attempt went. `result` is what the model (or the history) is told; `data` is
    what the tool knows as data (a ToolResult's), for code such as the phrase path's replies."""

    status: Status
    result: str
    tool: str
    arguments: dict
    risk: str = ""
    call_id: str = ""
    duration_s: float = 0.0
    reason: str = ""  # why it did not run or failed, in words for the log and audit
    data: Any = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Executor:
    """Runs tool calls for every door, with the same checks and one audit row each."""

    def __init__(self, registry: Any, *, store: Any = None, settings: Any = None, clock: Any = None,
                 timeout_s: float = 30.0, output_max_chars: int = 4000, home_control: Any = None, schedule: Any = None,
                 vision: Any = None):
        self.registry = registry
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.home_control = home_control  # handed to the tools in their ToolContext
        self.schedule = schedule
        self.vision = vision
        self.timeout_s = timeout_s
        self.output_max_chars = output_max_chars

    def check(self, action: Action) -> tuple[Tool | None, dict, str | None]:
        """(tool, coerced arguments, None) when it may run; (tool?, {}, why not) otherwise."""
        if action.problem:
            return None, {}, action.problem
        return check_arguments(self.registry, action.tool, action.arguments)

    async def run(self, action: Action, *, approve: Approve | None = None, cancel: asyncio.Event | None = None,
                  timeout_s: float | None = None) -> ActionOutcome:
        """Run one action to its outcome. Never raises for the tool's sake; a cancellation of
        the caller still leaves its audit row and then propagates."""
        return await self._run_checked(action, self.check(action), approve, cancel, timeout_s)

    async def _run_checked(self, action: Action, checked: tuple[Tool | None, dict, str | None], approve: Approve | None,
                           cancel: asyncio.Event | None, timeout_s: float | None) -> ActionOutcome:
        started = time.monotonic()
        tool, arguments, problem = checked
        if problem is not None:
            return self._finish(action, tool, "invalid", f"Error: {problem}", started, problem)
        consent = ""
        if tool.risk == "confirm":
            approved, consent = await _ask(approve, tool, arguments)
            if not approved:
                return self._finish(action, tool, "denied", DENIED_TEXT, started, consent, arguments)
        limit = min(t for t in (self.timeout_s, timeout_s, tool.timeout_s) if t is not None)
        try:
            status, result, reason, data = await self._call(tool, arguments, action, cancel, max(limit, 0.001))
        except asyncio.CancelledError:
            self._finish(action, tool, "cancelled", "Cancelled.", started, "the turn was stopped", arguments)
            raise
        return self._finish(action, tool, status, result, started, reason or consent, arguments, data)

    def refuse(self, action: Action, status: Status, reason: str) -> ActionOutcome:
        """Record an attempt that the door stops before it runs (a turn's guard), with its row."""
        tool, arguments, problem = self.check(action)
        return self._finish(action, tool, status, f"Not run: {reason}.", time.monotonic(), reason,
                            None if problem else arguments)

    async def steps(self, action: Action, *, approve: Approve | None = None, cancel: asyncio.Event | None = None,
                    timeout_s: float | None = None) -> AsyncIterator[ToolStarted | ToolFinished]:
        """`run` as step events: ToolStarted (for a call that can run), then one ToolFinished
        carrying the outcome's status."""
        checked = self.check(action)
        tool, arguments, problem = checked
        if problem is None:
            shown = {k: v for k, v in arguments.items() if v is not None}
            yield ToolStarted(call_id=action.call_id, name=tool.name, arguments=shown, risk=tool.risk)
        outcome = await self._run_checked(action, checked, approve, cancel, timeout_s)
        yield finished_event(outcome)

    async def _call(self, tool: Tool, arguments: dict, action: Action, cancel: asyncio.Event | None,
                    limit: float) -> tuple[Status, str, str, Any]:
        ctx = ToolContext(store=self.store, settings=self.settings, clock=self.clock, who=action.who,
                          conversation_id=action.conversation_id, home_control=self.home_control, schedule=self.schedule,
                          vision=self.vision)
        task = asyncio.ensure_future(tool.call(arguments, ctx))
        stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            done, _ = await asyncio.wait([task, *filter(None, [stop])], timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
            if not task.done():
                task.cancel()  # a sync tool's thread cannot be stopped; its answer is dropped
        if task not in done:
            if stop is not None and stop in done:
                return "cancelled", "Cancelled: the person stopped this before the tool finished.", "stopped while running", None
            return "timeout", f"Error: the tool {tool.name} did not finish within {limit:g} s.", f"no answer within {limit:g} s", None
        try:
            result = task.result()
        except ToolError as exc:
            return "error", f"Error: {exc}", str(exc), None
        except Exception as exc:  # a bug in the tool: logged loudly, the model told briefly
            log.error("tool %s crashed", tool.name, exc_info=exc)
            return "crashed", f"Error: the tool {tool.name} failed unexpectedly ({type(exc).__name__}).", f"{type(exc).__name__}: {exc}", None
        data = result.data if isinstance(result, ToolResult) else None
        return "ok", cap_output(str(result), self.output_max_chars), "", data

    def _finish(self, action: Action, tool: Tool | None, status: Status, result: str, started: float, reason: str,
                arguments: dict | None = None, data: Any = None) -> ActionOutcome:
        outcome = ActionOutcome(
            status=status, result=result, tool=tool.name if tool else (action.tool or "?"),
            arguments=arguments if arguments is not None else _as_dict(action.arguments), risk=tool.risk if tool else "",
            call_id=action.call_id, duration_s=round(time.monotonic() - started, 4), reason=reason, data=data,
        )
        self._audit(action, outcome)
        return outcome

    def _audit(self, action: Action, outcome: ActionOutcome) -> None:
        if self.store is None:
            return
        detail = "; ".join(filter(None, [action.source, outcome.reason]))
        try:
            self.store.audit(tool=outcome.tool, arguments=outcome.arguments, risk=outcome.risk, outcome=outcome.status,
                             duration_s=outcome.duration_s, who=action.who, conversation_id=action.conversation_id,
                             detail=detail)
        except Exception:  # the audit must not turn a done action into a failed one
            log.exception("could not write the audit row for %s", outcome.tool)


def check_arguments(registry: Any, name: str, arguments: Any) -> tuple[Tool | None, dict, str | None]:
    """The one check of a call before it runs: the tool exists and the arguments fit its
    schema (coerced). Returns (tool, arguments, None), or (tool or None, {}, why not, in
    words for the model)."""
    tool = registry.get(name)
    if tool is None:
        return None, {}, f"There is no tool named {name!r}. Valid tools: {', '.join(registry.names())}."
    try:
        return tool, tool.validate(arguments), None
    except ToolArgumentError as exc:
        return tool, {}, f"Invalid arguments for {exc}. Call it again with arguments that fit its schema."


def finished_event(outcome: ActionOutcome) -> ToolFinished:
    """The step event every door shows for an outcome."""
    return ToolFinished(call_id=outcome.call_id, name=outcome.tool, result=outcome.result, ok=outcome.ok,
                        duration_s=outcome.duration_s, outcome=outcome.status, data=outcome.data)


async def _ask(approve: Approve | None, tool: Tool, arguments: dict) -> tuple[bool, str]:
    """The door's answer and why; no hook, or a hook that fails, is a no."""
    if approve is None:
        return False, "nobody to ask"
    try:
        answer = await approve(tool, arguments)
    except Exception:
        log.exception("confirmation for %s failed; treating it as denied", tool.name)
        return False, "the confirmation failed"
    approved = bool(answer)
    return approved, getattr(answer, "reason", "") or ("confirmed" if approved else "not confirmed")


def cap_output(text: str, limit: int) -> str:
    """Tool output is capped before it goes back to the model (small context, small model)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


def _as_dict(arguments: Any) -> dict:
    if isinstance(arguments, dict):
        return arguments
    return {} if arguments is None else {"raw": arguments}
