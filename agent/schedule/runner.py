"""Running a due job: the action, the unattended policy, and a receipt for every run.

apscheduler hands due jobs to `ScheduleExecutor`, which gives them to `Runner.run` together
with the time each was due (a job function alone never learns it). The runner writes a
receipt for every run, including runs it skips as missed, and tells people through `notify`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.asyncio import AsyncIOExecutor

from agent.events import ReplyDone, ToolFinished
from agent.schedule.spec import Announcement
from agent.schedule.triggers import fire_times
from agent.actions import Action, Executor

log = logging.getLogger(__name__)

Notify = Callable[[Announcement], "Awaitable[bool] | bool"]  # True when someone saw or heard it
Submit = Callable[..., AsyncIterator[Any]]  # Daemon.submit(text, *, who, confirm=...)


# jobs.db stores this function by name in every job: renaming it would make apscheduler drop
# the stored jobs it can no longer load.
async def scheduled_job(**spec: Any) -> None:
    """The callable apscheduler stores for every agentd job; ScheduleExecutor runs jobs instead."""
    raise RuntimeError("agentd jobs run through agent.schedule.runner.ScheduleExecutor")


@dataclass
class Runtime:
    """What running jobs needs from the rest of agentd (the daemon fills it in)."""

    store: Any
    registry: Any = None
    settings: Any = None
    clock: Any = None
    submit: Submit | None = None
    notify: Notify | None = None
    # Handed to the tools a job calls directly (their ToolContext): the Scheduler sets
    # `schedule` to itself, the daemon keeps `home_control` current across reloads and
    # hands in the agent's `vision` hook (a camera check looks at a picture).
    schedule: Any = None
    home_control: Any = None
    vision: Any = None  # ToolContext.vision (agent.daemon.assembly.vision_hook), kept current like home_control


@dataclass
class RunResult:
    """How one run went, before it becomes a receipt."""

    outcome: str  # ok | error | denied
    output: str = ""
    detail: str = ""
    heard: bool = True  # False: an announcement nobody got, to be repeated later


def unattended(allow: list[str], denied: list[str]) -> Callable[[Any, dict], Awaitable[bool]]:
    """The confirm policy of a scheduled turn: yes only for tools the job's allow list names."""

    async def confirm(tool: Any, arguments: dict) -> bool:
        if tool.name in allow:
            return True
        denied.append(tool.name)
        return False

    return confirm


def local_submit(agent: Any) -> Submit:
    """A `submit` that runs turns on an Agent directly (tests, or a process without a daemon)."""

    async def submit(text: str, *, who: str, conversation_id: str | None = None, thinking: bool | None = None,
                     confirm: Any = None) -> AsyncIterator[Any]:
        turn = agent.respond(text, conversation_id=conversation_id, who=who, thinking=thinking, confirm=confirm)
        async for event in turn:
            yield event

    return submit


class Runner:
    """Runs due jobs and records their receipts."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime

    async def run(self, job: Any, due: datetime, merged: list[datetime]) -> JobExecutionEvent:
        """One due run of an apscheduler job, as the executor reports it back to apscheduler."""
        code = await self.execute(job.id, job.kwargs, due, grace=job.misfire_grace_time, merged=merged)
        return JobExecutionEvent(code, job.id, job._jobstore_alias, due)

    async def execute(self, job_id: str, spec: dict, due: datetime, *, grace: float | None = None,
                      merged: list[datetime] = ()) -> int:
        """Run a job's action (or record it missed if past its grace), always with a receipt.

        Returns the apscheduler event code: EVENT_JOB_EXECUTED, EVENT_JOB_MISSED or EVENT_JOB_ERROR.
        """
        started, merged_note = datetime.now(timezone.utc), _merged_note(merged)
        if grace is not None and started - due > timedelta(seconds=grace):
            log.warning("job %s missed its run due %s (late by %s)", job_id, due, started - due)
            detail = f"missed by {_ago(started - due)} (grace {grace:g} s){merged_note}"
            await self._receipt(job_id, spec, due, None, RunResult("missed", _what(spec), detail, heard=False))
            return EVENT_JOB_MISSED
        clock, code = time.monotonic(), EVENT_JOB_EXECUTED
        try:
            result = await self.perform(job_id, spec, due)
        except asyncio.CancelledError:  # agentd is stopping mid-run: still leave a receipt
            stopped = RunResult("error", "", "cancelled: agentd stopped")
            self._write(job_id, spec, due, started, stopped, time.monotonic() - clock)
            raise
        except Exception as exc:  # a bug: keep the daemon and the schedule going
            log.exception("job %s failed", job_id)
            result, code = RunResult("error", "", f"{type(exc).__name__}: {exc}"), EVENT_JOB_ERROR
        result.detail += merged_note
        await self._receipt(job_id, spec, due, started, result, time.monotonic() - clock)
        return code

    async def perform(self, job_id: str, spec: dict, due: datetime) -> RunResult:
        """Do what the job says."""
        action, speak = spec["action"], spec.get("speak", False)
        if "say" in action:
            heard = await self.tell(job_id, _say_kind(spec), action["say"], speak, due)
            return RunResult("ok", action["say"], "" if heard else "no one was there to hear it yet", heard)
        if "tool" in action:
            result = await self._call_tool(job_id, spec, action["tool"], action.get("args") or {})
        else:
            result = await self._turn(job_id, spec, action["prompt"])
        if result.output and (speak or "prompt" in action):  # a prompt's reply is always shown
            await self.tell(job_id, "prompt" if "prompt" in action else "say", result.output, speak, due)
        return result

    async def _turn(self, job_id: str, spec: dict, prompt: str) -> RunResult:
        if self.rt.submit is None:
            return RunResult("error", "", "no agent to run the prompt (the daemon wires one in)")
        denied: list[str] = []
        reply, stopped_by = "", "error"
        confirm = unattended(spec.get("allow", []), denied)
        async for event in self.rt.submit(prompt, who=f"schedule:{job_id}", confirm=confirm):
            if isinstance(event, ToolFinished) and event.outcome == "denied":
                denied.append(event.name)  # also when the daemon refused before asking our policy
            if isinstance(event, ReplyDone):
                reply, stopped_by = event.text, event.stopped_by
        if denied:
            return RunResult("denied", reply, _denied(*dict.fromkeys(denied)))
        if stopped_by != "done":
            return RunResult("error", reply, f"turn stopped: {stopped_by}")
        return RunResult("ok", reply)

    async def _call_tool(self, job_id: str, spec: dict, name: str, args: dict) -> RunResult:
        """A direct tool call, through the executor like every other door's; confirm-tier
        tools run only when the job's allow list names them (nobody is there to ask)."""
        if self.rt.registry is None:
            return RunResult("error", "", f"no tool named {name!r}: this schedule has no tools")
        executor = Executor(self.rt.registry, store=self.rt.store, settings=self.rt.settings, clock=self.rt.clock,
                            timeout_s=_setting(self.rt.settings, "tool_timeout_s", 30.0),
                            output_max_chars=_setting(self.rt.settings, "tool_output_max_chars", 4000),
                            home_control=self.rt.home_control, schedule=self.rt.schedule, vision=self.rt.vision)
        denied: list[str] = []
        action = Action(tool=name, arguments=args, who=f"schedule:{job_id}", source=f"job {job_id}")
        done = await executor.run(action, approve=unattended(spec.get("allow", []), denied))
        if done.status == "denied":
            return RunResult("denied", "", _denied(name))
        if not done.ok:
            return RunResult("error", "", f"{name}: {done.status}: {done.reason}")
        return RunResult("ok", done.result)

    async def tell(self, job_id: str, kind: str, text: str, speak: bool, due: datetime) -> bool:
        """Announce something; True when someone saw or heard it."""
        return await self.announce(Announcement(job_id=job_id, kind=kind, text=text, speak=speak, scheduled=due))

    async def announce(self, announcement: Announcement) -> bool:
        """Hand an announcement to the daemon's notify; True when someone saw or heard it."""
        if self.rt.notify is None:
            return False
        try:
            heard = self.rt.notify(announcement)
            return bool(await heard if asyncio.iscoroutine(heard) else heard)
        except Exception:
            log.exception("could not announce %s", announcement)
            return False

    async def _receipt(self, job_id: str, spec: dict, due: datetime, started: datetime | None, result: RunResult,
                       duration: float = 0.0) -> None:
        # A worker thread: a run's receipt must not hold up the next job's start.
        await asyncio.to_thread(self._write, job_id, spec, due, started, result, duration)

    def _write(self, job_id: str, spec: dict, due: datetime, started: datetime | None, result: RunResult,
               duration: float) -> None:
        if self.rt.store is not None:
            self.rt.store.add_receipt(job_id, spec.get("kind", "?"), due, started, result.outcome, result.output,
                                      result.detail, duration, reported=result.heard)


class ScheduleExecutor(AsyncIOExecutor):
    """apscheduler's asyncio executor, running jobs through a Runner that knows when each was due."""

    def __init__(self, runner: Runner):
        super().__init__()
        self.runner = runner

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        # Called before apscheduler moves job.next_run_time on, so it still says when the
        # first of the runs now due was: the runs coalescing merged are those before run_times[0].
        merged = fire_times(job.trigger, job.next_run_time, run_times[0]) if job.next_run_time else []

        async def run_all() -> list[JobExecutionEvent]:
            events = []
            for i, due in enumerate(run_times):
                events.append(await self.runner.run(job, due, merged if i == 0 else []))
            return events

        def done(future: asyncio.Future) -> None:
            self._pending_futures.discard(future)
            try:
                events = future.result()
            except BaseException:
                self._run_job_error(job.id, *sys.exc_info()[1:])
            else:
                self._run_job_success(job.id, events)

        future = self._eventloop.create_task(run_all(), name=f"job {job.id}")
        future.add_done_callback(done)
        self._pending_futures.add(future)


def _denied(*names: str) -> str:
    return f"denied: {', '.join(names)} (confirm-tier, not in this job's allow list; nobody to ask)"


def _setting(settings: Any, name: str, default: float) -> float:
    """A setting of the agent section, when there are settings (tests may run without)."""
    return getattr(getattr(settings, "agent", None), name, default)


def _say_kind(spec: dict) -> str:
    return spec.get("kind") if spec.get("kind") in ("reminder", "timer") else "say"


def _what(spec: dict) -> str:
    action = spec.get("action", {})
    return action.get("say") or action.get("prompt") or f"{action.get('tool')}({action.get('args') or {}})"


def _merged_note(merged: list[datetime]) -> str:
    if not merged:
        return ""
    return f"; {len(merged)} earlier run(s) due since {merged[0]:%Y-%m-%d %H:%M %Z} merged into this one (coalesce)"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
