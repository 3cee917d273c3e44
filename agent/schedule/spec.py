"""What a scheduled job is, in the words agentd keeps: its spec, its listing, its announcements.

A job's spec is a plain JSON-able dict stored as the apscheduler job's kwargs, so jobs.db
holds everything needed to run the job after a restart:

    kind         reminder | timer | prompt | automation
    action       {"say": text} | {"prompt": text} | {"tool": name, "args": {...}}
    label        what lists show ("call mum", "morning-briefing")
    when         how the trigger was written ("at 18:00", "cron 0 7 * * 1-5")
    speak        read the result aloud when voice is on
    allow        confirm-tier tools this job may use unattended (only automations have any)
    enabled      false: an automation kept paused by the config
    fingerprint  automations only: changes when its YAML entry changes
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

KINDS = ("reminder", "timer", "prompt", "automation")
CONFIG, AGENT = "config", "agent"  # job store aliases: YAML automations / jobs the agent made


def make_spec(
    kind: str, action: dict, *, label: str, when: str, speak: bool = False,
    allow: list[str] | None = None, enabled: bool = True, fingerprint: str | None = None,
) -> dict[str, Any]:
    """A job spec (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"job kind {kind!r} is not one of {', '.join(KINDS)}")
    return {
        "kind": kind, "action": dict(action), "label": label, "when": when, "speak": speak,
        "allow": list(allow or []), "enabled": enabled, "fingerprint": fingerprint,
    }


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """One job as `agentd jobs` and the list_schedules tool show it."""

    id: str
    source: str  # "config" (YAML automation) or "agent" (made by the agent)
    kind: str
    label: str
    when: str
    next_run: datetime | None
    state: str  # scheduled | paused | disabled

    @classmethod
    def of(cls, job: Any, source: str) -> JobInfo:
        spec = job.kwargs
        state = "disabled" if not spec.get("enabled", True) else "paused" if job.next_run_time is None else "scheduled"
        return cls(id=job.id, source=source, kind=spec.get("kind", "?"), label=spec.get("label", job.name),
                   when=spec.get("when", ""), next_run=job.next_run_time, state=state)


@dataclass(frozen=True, kw_only=True)
class Announcement:
    """Something the schedule tells people: a reminder, a timer, a prompt's reply, a missed run.

    The daemon shows it to connected clients and speaks it when `speak` is set and voice is on.
    """

    job_id: str
    kind: str  # reminder | timer | say | prompt | missed | late
    text: str
    speak: bool
    scheduled: datetime
