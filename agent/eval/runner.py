"""Run eval cases through the real turn (`Agent.respond`) and collect what the model did.

Each case starts clean: a fresh store in a temporary folder (so memory, history and the audit
log hold only this case; `memory:` facts and the `conversation:` are put in first), the
simulated home reset to the case's states, and a new conversation. Confirm-tier tools are
answered "no": the call the model wrote is the outcome, and nothing is changed for real. The
calls come from the turn's own audit log (every call, valid or not, with its outcome).

Once a tool has run, the case's outcome is known; the model's closing sentence is not
scored, so it is stopped at its first words (`full_replies` lets it finish). Latency is the
turn's wall time up to that point: the time to the outcome a person would wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from agent.eval.cases import Case
from agent.eval.home import SimulatedHome
from agent.eval.score import Comparer, ObservedCall, Verdict, judge
from agent.events import Note, ReplyDone, TextDelta, ToolFinished

log = logging.getLogger(__name__)

@dataclass
class CaseResult:
    """What happened in one case, and the verdict on it."""

    case: Case
    variant: str
    calls: list[ObservedCall]
    verdict: Verdict
    reply: str = ""
    stopped_by: str = ""
    latency_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    generated_tokens: int = 0
    coerced_calls: int = 0  # calls that ran a tool the grammar chose, not the model (goal 0)
    confirm_asked: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        expect = self.case.expect
        return {
            "id": self.case.id, "category": self.case.category, "variant": self.variant, "say": self.case.say,
            "expect": expect.model_dump(mode="json", exclude_defaults=True) or {"none": True},
            "success": self.verdict.success, "reason": self.verdict.reason, "wrong_tool": self.verdict.wrong_tool,
            "calls": [{"name": c.name, "arguments": c.given(), "valid": c.valid, "outcome": c.outcome, "detail": c.detail}
                      for c in self.calls],
            "reply": self.reply, "stopped_by": self.stopped_by, "latency_s": round(self.latency_s, 4),
            "generated_tokens": self.generated_tokens, "coerced_calls": self.coerced_calls, "confirm_asked": self.confirm_asked, "notes": self.notes,
            "tool_results": self.tool_results,
        }


class EvalRunner:
    """Runs cases through one agent, one at a time."""

    def __init__(
        self,
        agent: Any,
        *,
        workdir: Path,
        variant: str = "default",
        home: SimulatedHome | None = None,
        home_states: dict[str, str] | None = None,
        comparer: Comparer | None = None,
        use_skills: Callable[[Case], None] | None = None,
        full_replies: bool = False,
    ):
        self.agent = agent
        self.workdir = Path(workdir)
        self.variant = variant
        self.home = home
        self.home_states = dict(home_states or {})
        self.comparer = comparer or Comparer()
        self.use_skills = use_skills
        self.full_replies = full_replies

    async def run(self, cases: list[Case], on_done: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
        results = []
        for case in cases:
            result = await self.run_case(case)
            results.append(result)
            if on_done is not None:
                on_done(result)
        return results

    async def run_case(self, case: Case) -> CaseResult:
        """One case: set up, run the turn, read the audit log, judge."""
        from agent.store import Store

        if self.use_skills is not None:
            self.use_skills(case)
        if self.home is not None:
            self.home.reset({**self.home_states, **case.states})
        store = Store(self.workdir / f"{self.variant}-{case.id}.db")
        self.agent.store = store
        try:
            for fact in case.memory:
                store.remember(fact, source="eval")
            conversation = store.new_conversation(title=case.id, source="eval")
            store.add_messages(conversation, [turn.message() for turn in case.conversation])
            result = await self._turn(case, conversation)
            result.calls = observed_calls(store)
        finally:
            self.agent.store = None
            store.close()
        result.verdict = judge(case, result.calls, self.comparer)
        return result

    async def _turn(self, case: Case, conversation: str) -> CaseResult:
        result = CaseResult(case=case, variant=self.variant, calls=[], verdict=Verdict(False))

        async def deny(tool: Any, arguments: dict) -> bool:
            result.confirm_asked.append(tool.name)
            return False

        cancel = asyncio.Event()
        tool_ran = False
        started = time.monotonic()
        async for event in self.agent.respond(case.say, conversation_id=conversation, who="eval", confirm=deny, cancel=cancel):
            if isinstance(event, ToolFinished):
                tool_ran = True
                result.tool_results.append(event.result)
            elif isinstance(event, TextDelta) and tool_ran and not self.full_replies:
                cancel.set()  # the outcome is known; the closing sentence is not scored
            elif isinstance(event, Note):
                result.notes.append(event.text)
            elif isinstance(event, ReplyDone):
                result.reply, result.stopped_by = event.text, event.stopped_by
                result.generated_tokens = event.stats.generated_tokens
                result.coerced_calls = event.stats.coerced_calls
        result.latency_s = time.monotonic() - started
        return result


def observed_calls(store: Any) -> list[ObservedCall]:
    """Every call of the case's turn, oldest first, from the store's audit log (the executor
    writes one row per attempt: refused, invalid and cut-short ones included)."""
    entries = list(reversed(store.audit_entries(limit=10_000)))
    return [ObservedCall(name=e.tool, arguments=e.arguments if isinstance(e.arguments, dict) else {},
                         valid=e.outcome != "invalid", outcome=e.outcome, detail=e.detail) for e in entries]


@contextlib.contextmanager
def eval_schedule(folder: Path, settings: Any, agent: Any) -> Iterator[Any]:
    """A schedule in `folder` handed to `agent`, so the timer and reminder tools reach it as in
    the daemon (which sets `agent.schedule` to its running Scheduler).

    It only records jobs (nothing fires during the eval).
    """
    from agent.schedule import Scheduler

    schedule = Scheduler.offline(folder, settings)
    previous, agent.schedule = agent.schedule, schedule
    try:
        yield schedule
    finally:
        schedule.shutdown()
        agent.schedule = previous
