"""The schedule: reminders, timers and automations that survive restarts, with run receipts.

    agent.schedule.Scheduler      apscheduler 3.x + HOME/jobs.db; the daemon runs `serve()` as a service
    agent.schedule.Runtime        what jobs need from the daemon: store, registry, submit, notify
    agent.cli.jobs            `agentd jobs ...`

The agent's schedule tools reach the running Scheduler as `ctx.schedule` (agent.tools.ToolContext):
the daemon sets `agent.schedule`, and the Scheduler hands itself to its jobs' direct tool calls.

Modules: triggers (cron/every/at, DST-safe), timewords ("6 pm", "10 minutes"), automations
(the YAML model and its checks), sync (YAML -> job store), runner (runs a job, writes its
receipt, the unattended policy), watch (sleep/resume, reporting missed runs), spec (job data).

The names below load on first use, so `agentd --help` does not import SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JOBS_DB": "agent.schedule.scheduler", "ScheduleError": "agent.schedule.scheduler",
    "Scheduler": "agent.schedule.scheduler",
    "Runtime": "agent.schedule.runner", "local_submit": "agent.schedule.runner",
    "Announcement": "agent.schedule.spec", "JobInfo": "agent.schedule.spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agent.schedule' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
