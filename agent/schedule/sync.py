"""Syncing the YAML automations into the `config` job store by id: added, updated, removed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apscheduler.triggers.date import DateTrigger

from agent.schedule.automations import LoadedAutomation, load_automations
from agent.schedule.runner import scheduled_job
from agent.schedule.spec import AGENT, CONFIG

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a sync changed, and the automations it could not load."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sync_automations(scheduler: Any, raw: list | None) -> SyncReport:
    """Make the config job store hold exactly the automations that load; never touch agent jobs."""
    loaded, problems = load_automations(raw, tz=scheduler.tz, registry=scheduler.runtime.registry)
    report = SyncReport(problems=problems)
    aps = scheduler.aps
    existing = {job.id: job for job in aps.get_jobs(jobstore=CONFIG)}
    agent_ids = {job.id for job in aps.get_jobs(jobstore=AGENT)}
    watched: list[LoadedAutomation] = []
    for item in loaded:
        if item.id in agent_ids:
            report.problems.append(f"automation {item.id!r}: id: a job the agent made has this id; choose another")
            continue
        if item.trigger is None:
            watched.append(item)
            continue
        old = existing.pop(item.id, None)
        # An unchanged job keeps its stored next run time, so a run that fell due while agentd
        # was down still happens (late, within its grace) or is recorded as missed.
        if old is not None and old.kwargs.get("fingerprint") == item.spec["fingerprint"]:
            report.unchanged.append(item.id)
            continue
        if old is None and _already_done(scheduler, item):
            report.unchanged.append(item.id)
            continue
        paused = {} if item.automation.enabled else {"next_run_time": None}
        aps.add_job(scheduled_job, trigger=item.trigger, id=item.id, name=item.id, kwargs=item.spec, jobstore=CONFIG,
                    replace_existing=True, misfire_grace_time=scheduler.grace_for(item.spec), **paused)
        (report.updated if old is not None else report.added).append(item.id)
    for job_id in existing:  # gone from the config, or no longer valid
        aps.remove_job(job_id, CONFIG)
        report.removed.append(job_id)
    _hand_over_state_triggers(scheduler, watched, report)
    for problem in report.problems:
        log.error("%s", problem)
    if report.added or report.updated or report.removed:
        log.info("automations synced: added %s, updated %s, removed %s", report.added, report.updated, report.removed)
    scheduler.problems = list(report.problems)
    return report


def _already_done(scheduler: Any, item: LoadedAutomation) -> bool:
    """A one-off `at:` automation whose time has passed and that already has a receipt."""
    trigger, store = item.trigger, scheduler.runtime.store
    if not isinstance(trigger, DateTrigger) or store is None or trigger.run_date > datetime.now(timezone.utc):
        return False
    return any(r.scheduled == trigger.run_date for r in store.receipts(limit=20, job_id=item.id))


def _hand_over_state_triggers(scheduler: Any, watched: list[LoadedAutomation], report: SyncReport) -> None:
    """State triggers belong to home control; without its hook they are reported, not dropped."""
    if scheduler.state_hook is None:
        report.problems.extend(
            f"automation {item.id!r}: trigger.state: state triggers need home control, which is not running"
            for item in watched
        )
        return
    try:
        # Always called, so removed state automations stop being watched; it may return the
        # problems it found with some (an unknown device), one message each.
        report.problems.extend(scheduler.state_hook(watched) or [])
    except Exception as exc:
        log.exception("home control refused the state automations")
        report.problems.append(f"state automations: home control refused them: {exc}")
