"""The schedule: reminders, timers and automations that survive restarts, with run receipts.

    agent.schedule.Scheduler      apscheduler 3.x + jobs.db; the daemon runs `serve()` as a service
    agent.schedule.Runtime        what jobs need from the daemon: store, registry, submit, notify
    agent.schedule.current()      the running Scheduler (the agent's tools reach it through this)
    agent.schedule.cli            `agentd jobs ...`

Modules: triggers (cron/every/at, DST-safe), timewords ("6 pm", "10 minutes"), automations
(the YAML model and its checks), sync (YAML -> job store), runner (runs a job, writes its
receipt, the unattended policy), watch (sleep/resume, reporting missed runs), spec (job data).
"""

from agent.schedule.runner import Runtime, local_submit
from agent.schedule.scheduler import JOBS_DB, ScheduleError, Scheduler, current
from agent.schedule.spec import Announcement, JobInfo

__all__ = ["JOBS_DB", "Announcement", "JobInfo", "Runtime", "ScheduleError", "Scheduler", "current", "local_submit"]
