"""The schedule: apscheduler 3.x on the daemon's event loop, with its jobs in HOME/jobs.db.

Two job stores share the file: `config` holds the YAML automations (synced by id on start
and on reload) and `agent` holds what the agent made (reminders, timers, prompts), which no
sync touches. Every job has an explicit id, `max_instances=1`, the configured `coalesce`, and
a `misfire_grace_time` chosen on purpose: generous for reminders, tighter for turns and tools.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from agent.schedule.runner import Runner, Runtime, ScheduleExecutor, scheduled_job
from agent.schedule.spec import AGENT, CONFIG, JobInfo, make_spec
from agent.schedule.sync import SyncReport, sync_automations
from agent.schedule.watch import ClockWatch, keep_watch

log = logging.getLogger(__name__)

JOBS_DB = "jobs.db"
MIN_FREE_BYTES = 256 * 1024  # below this, a job's run could not be saved: due jobs wait
_HOLD_S = 5.0  # how often held jobs look for space again
_TABLES = {CONFIG: "automation_jobs", AGENT: "agent_jobs"}


class ScheduleError(ValueError):
    """A job operation that cannot be done (no such job, a config job, a paused job)."""


class _LoopScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose wake-ups queued behind a shutdown do nothing, and which holds due
    jobs while jobs.db cannot be written.

    apscheduler 3.11 would still process due jobs in such a wake-up, with its executors shut
    down, and move their next run times on: a run lost without a receipt. And when it runs a
    job but cannot then save the job's next time (a full disk), the error escapes its wake-up:
    no timer is set, and the next look runs the same job again, and again.
    """

    room: Any = None  # () -> bool: whether jobs.db can take a write now (Scheduler.start sets it)
    failed: Any = None  # (exc) -> None: jobs.db could not be read or updated
    fine: Any = None  # () -> None: it could again

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        if self.room is not None and not self.room():
            return _HOLD_S  # late beats twice: the jobs run when there is space (within their grace)
        try:
            wait = super()._process_jobs()
        except SQLAlchemyError as exc:
            if self.failed is not None:
                self.failed(exc)
            return _HOLD_S
        if self.fine is not None:
            self.fine()
        return wait


class _EditOnly(BaseScheduler):
    """An apscheduler that never runs jobs: `agentd jobs` reads and edits jobs.db with it.

    Not BackgroundScheduler: its thread processes due jobs once while shutting down, even when
    started paused, and so would "run" them in the command's process.
    """

    def wakeup(self) -> None:
        pass  # running jobs is the daemon's business

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)


def jobs_engine(path: Path):
    """An SQLAlchemy engine on jobs.db in WAL mode: one commit per job change, crash-safe."""
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 5})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is crash-safe in WAL mode (a killed process loses nothing committed); only a
        # power cut may lose the last commits, and fsyncing each job change would make 100
        # jobs due together late by the sum of their fsyncs.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return engine


def salvage_jobs_db(path: Path, health: Any = None) -> None:
    """Set a damaged jobs.db aside and salvage its jobs into a fresh one (the config's
    automations are synced again anyway; the agent's reminders exist only here)."""
    from agent.salvage import salvage_if_damaged

    def fresh(target: Path) -> None:
        engine = jobs_engine(target)
        for table in _TABLES.values():
            SQLAlchemyJobStore(engine=engine, tablename=table).jobs_t.create(engine, checkfirst=True)
        engine.dispose()

    report = salvage_if_damaged(path, _TABLES.values(), fresh)
    if report is not None and health is not None:
        health.report(path.name, report.text(), kind="damaged")
    elif report is not None:
        log.error("%s", report.text())


def local_zone(settings: Any) -> tzinfo:
    """The configured agent.timezone, else the machine's zone."""
    zone = settings.agent.tzinfo() if settings is not None else None
    if zone is None:
        import tzlocal  # apscheduler's own dependency

        zone = tzlocal.get_localzone()
    return zone


class Scheduler:
    """agentd's schedule: YAML automations and the agent's jobs, with receipts for every run."""

    def __init__(self, home: Path, settings: Any, *, runtime: Runtime | None = None, tz: tzinfo | None = None,
                 state_hook: Any = None, clock_watch: ClockWatch | None = None, health: Any = None):
        self.home = Path(home)
        self.settings = settings
        self.runtime = runtime or Runtime(store=None)
        self.runtime.schedule = self  # a job's direct tool calls reach this schedule in their ToolContext
        self.runner = Runner(self.runtime)
        self.tz = tz or local_zone(settings)
        # Extension point for home control: called with the state-triggered automations
        # (LoadedAutomation) at each sync; it watches the devices and calls `await scheduler.fire(a.id, a.spec)`.
        self.state_hook = state_hook
        self.clock_watch = clock_watch  # None: the real clocks (tests pass a ClockWatch with a fake wall clock)
        self.problems: list[str] = []
        self.health = health  # an agent.health.Health: where a damaged jobs.db is reported
        self.aps: Any = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self, *, paused: bool = False, edit_only: bool = False) -> None:
        """Open jobs.db and start apscheduler on the running event loop (edit_only: no loop, no runs)."""
        if self.aps is not None and self.aps.running:
            return
        s = self.settings.schedule
        salvage_jobs_db(self.home / JOBS_DB, self.health)
        engine = jobs_engine(self.home / JOBS_DB)
        stores = {alias: SQLAlchemyJobStore(engine=engine, tablename=table) for alias, table in _TABLES.items()}
        defaults = {"coalesce": s.coalesce, "max_instances": 1, "misfire_grace_time": _whole(s.misfire_grace_s)}
        if edit_only:
            self.aps = _EditOnly(jobstores=stores, job_defaults=defaults, timezone=self.tz)
        else:
            executors = {"default": ScheduleExecutor(self.runner)}
            self.aps = _LoopScheduler(jobstores=stores, executors=executors, job_defaults=defaults, timezone=self.tz)
            self.aps.room, self.aps.failed, self.aps.fine = self.has_room, self._jobs_db_failed, self._jobs_db_fine
            self.aps.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self.aps.start(paused=paused)

    @classmethod
    def offline(cls, home: Path, settings: Any, store: Any = None) -> Scheduler:
        """A scheduler that only reads and edits jobs.db (the daemon may be running meanwhile)."""
        scheduler = cls(home, settings, runtime=Runtime(store=store))
        scheduler.start(edit_only=True)
        return scheduler

    def shutdown(self) -> None:
        """Stop running jobs; jobs.db keeps every job for the next start."""
        if self.aps is not None and self.aps.running:
            self.aps.shutdown(wait=False)

    async def serve(self) -> None:
        """The daemon service: start, sync the YAML automations, keep watch until cancelled."""
        self.start()
        try:
            self.sync_automations()
            await keep_watch(self, self.clock_watch)
        finally:
            self.shutdown()

    def reload(self, settings: Any, registry: Any = None) -> SyncReport:
        """New settings (SIGHUP, `agentd reload`), and the agent's tools if they changed: re-sync."""
        self.settings = self.runtime.settings = settings
        self.tz = local_zone(settings)
        if registry is not None:
            self.runtime.registry = registry
        return self.sync_automations()

    async def fire(self, job_id: str, spec: dict) -> None:
        """Run a job's action now, outside apscheduler (a state trigger), with a receipt like any run."""
        await self.runner.execute(job_id, spec, datetime.now(timezone.utc))

    def sync_automations(self, raw: list | None = None) -> SyncReport:
        """Sync `automations:` (from the settings unless given) into the config job store."""
        return sync_automations(self, self.settings.automations if raw is None else raw)

    def status(self) -> dict:
        """The schedule's part of the daemon's status report."""
        if not self.running:
            return {"schedule": "stopped"}
        jobs = self.jobs()
        upcoming = next((j for j in jobs if j.next_run is not None), None)
        following = upcoming and f"{upcoming.id} at {_local(upcoming.next_run, self.tz)}"
        return {"schedule": {"jobs": len(jobs), "next": following, "problems": self.problems}}

    def has_room(self) -> bool:
        """Whether jobs.db's disk has space for a run's bookkeeping; said once when it has not."""
        free = shutil.disk_usage(self.home).free
        problem = (f"the disk holding {self.home / JOBS_DB} is full: scheduled jobs and reminders wait until "
                   "there is space, then run late (within their grace) or are reported missed")
        if free < MIN_FREE_BYTES:
            if self.health is not None:
                self.health.report(f"{JOBS_DB}:space", problem)
            return False
        if self.health is not None and self.health.get(f"{JOBS_DB}:space"):
            self.health.clear(f"{JOBS_DB}:space", "there is space for jobs.db again: held jobs run now")
        return True

    def _jobs_db_failed(self, exc: Exception) -> None:
        """apscheduler could not read or update jobs.db: due jobs wait; said once, not every look."""
        from agent.salvage import is_damage

        cause = getattr(exc, "orig", None) or exc
        if is_damage(cause):
            problem = (f"{JOBS_DB} is damaged ({cause}): scheduled jobs are on hold; restart agentd "
                       "(`agentd stop`, `agentd start`) to set it aside and salvage its jobs")
        else:
            problem = f"{JOBS_DB} could not be updated ({cause}): scheduled jobs wait and are tried again"
        log.debug("jobs.db: %s", exc)
        if self.health is not None:
            self.health.report(f"{JOBS_DB}:use", problem)
        else:
            log.error("%s", problem)

    def _jobs_db_fine(self) -> None:
        if self.health is not None and self.health.get(f"{JOBS_DB}:use"):
            self.health.clear(f"{JOBS_DB}:use", f"{JOBS_DB} is in use again")

    @property
    def running(self) -> bool:
        return self.aps is not None and self.aps.running

    def wakeup(self) -> None:
        """Look at jobs.db now: due jobs run, edits by `agentd jobs` take effect."""
        if self.running:
            self.aps.wakeup()

    # -- the agent's jobs ---------------------------------------------------------------------

    def add_reminder(self, text: str, when: datetime) -> JobInfo:
        """A one-off reminder, said (and spoken) at `when`."""
        spec = make_spec("reminder", {"say": f"Reminder: {text}"}, label=text, when=f"at {_local(when, self.tz)}",
                         speak=True)
        return self._add_agent_job("reminder", DateTrigger(run_date=when), spec)

    def add_timer(self, duration: timedelta, label: str = "") -> JobInfo:
        """A timer that goes off after `duration`."""
        what = f"{label} ({_span(duration)})" if label else _span(duration)
        spec = make_spec("timer", {"say": f"Timer done: {what}"}, label=label or _span(duration),
                         when=f"in {_span(duration)}", speak=True)
        return self._add_agent_job("timer", DateTrigger(run_date=datetime.now(timezone.utc) + duration), spec)

    def add_prompt(self, prompt: str, trigger: BaseTrigger, when: str) -> JobInfo:
        """An agent turn on a schedule; it runs unattended, so no confirm-tier tool is allowed."""
        spec = make_spec("prompt", {"prompt": prompt}, label=prompt, when=when)
        return self._add_agent_job("prompt", trigger, spec)

    def _add_agent_job(self, kind: str, trigger: BaseTrigger, spec: dict) -> JobInfo:
        if not self.has_room():
            raise ScheduleError(f"not scheduled: the disk holding {JOBS_DB} is full; free some space and ask again")
        job_id = f"{kind}-{uuid.uuid4().hex[:6]}"
        while self.aps.get_job(job_id) is not None:  # a clash is one in millions; still, never overwrite
            job_id = f"{kind}-{uuid.uuid4().hex[:6]}"
        try:
            job = self.aps.add_job(scheduled_job, trigger=trigger, id=job_id, name=spec["label"][:60], kwargs=spec,
                                   jobstore=AGENT, misfire_grace_time=self.grace_for(spec))
        except SQLAlchemyError as exc:  # e.g. the disk filled between the look and the write
            raise ScheduleError(f"not scheduled: {JOBS_DB} could not be written ({getattr(exc, 'orig', exc)})") from None
        log.info("scheduled %s: %s (%s)", job_id, spec["label"], spec["when"])
        return JobInfo.of(self.aps.get_job(job.id, AGENT), AGENT)

    def grace_for(self, spec: dict) -> int:
        """How late a run may start (s): reminders are worth hearing late, turns less so."""
        s = self.settings.schedule
        return _whole(s.reminder_grace_s if "say" in spec["action"] else s.misfire_grace_s)

    # -- every job ------------------------------------------------------------------------------

    def jobs(self) -> list[JobInfo]:
        """Every job, soonest first; paused and disabled ones last."""
        found = [JobInfo.of(job, alias) for alias in _TABLES for job in self.aps.get_jobs(jobstore=alias)]
        far = datetime.max.replace(tzinfo=timezone.utc)
        return sorted(found, key=lambda j: (j.next_run is None, j.next_run or far, j.id))

    def job(self, job_id: str) -> JobInfo:
        """One job; ScheduleError if there is none with that id."""
        for alias in _TABLES:
            job = self.aps.get_job(job_id, alias)
            if job is not None:
                return JobInfo.of(job, alias)
        raise ScheduleError(f"no job {job_id!r} (`agentd jobs` lists them)")

    def pause(self, job_id: str) -> JobInfo:
        """Stop a job from running until it is resumed."""
        info = self.job(job_id)
        self.aps.pause_job(job_id, info.source)
        return self.job(job_id)

    def resume(self, job_id: str) -> JobInfo:
        """Let a paused job run again, from its next time on."""
        info = self.job(job_id)
        if info.state == "disabled":
            raise ScheduleError(f"{job_id!r} is disabled in the config (enabled: false); change it there")
        self.aps.resume_job(job_id, info.source)
        return self.job(job_id)

    def run_now(self, job_id: str) -> JobInfo:
        """Make a job due now; the daemon runs it within schedule.poll_s."""
        info = self.job(job_id)
        if info.state != "scheduled":
            raise ScheduleError(f"{job_id!r} is {info.state}; resume it first")
        self.aps.modify_job(job_id, info.source, next_run_time=datetime.now(timezone.utc))
        self.wakeup()
        return self.job(job_id)

    def remove(self, job_id: str, *, agent_only: bool = False) -> JobInfo:
        """Delete a job. A config automation comes back on the next sync unless the YAML changes."""
        info = self.job(job_id)
        if agent_only and info.source == CONFIG:
            raise ScheduleError(f"{job_id!r} is an automation from the config file; remove it there")
        try:
            self.aps.remove_job(job_id, info.source)
        except JobLookupError:
            raise ScheduleError(f"no job {job_id!r}") from None
        log.info("removed job %s", job_id)
        return info

    def _skipped(self, ev: Any) -> None:
        """A run that found the previous one still going (max_instances=1): say so in a receipt."""
        if self.runtime.store is not None:
            job = self.aps.get_job(ev.job_id)
            kind = job.kwargs.get("kind", "?") if job is not None else "?"
            self.runtime.store.add_receipt(ev.job_id, kind, ev.scheduled_run_times[-1], None, "skipped", "",
                                           "the previous run was still going (max_instances = 1)")


def _whole(seconds: float) -> int:
    """apscheduler takes whole seconds of grace, and at least one."""
    return max(1, round(seconds))


def _local(moment: datetime, tz: tzinfo) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M %Z}"


def _span(duration: timedelta) -> str:
    seconds = int(round(duration.total_seconds()))
    parts = [(seconds // 3600, "h"), (seconds % 3600 // 60, "min"), (seconds % 60, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"
