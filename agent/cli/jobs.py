"""`agentd jobs [list|history|run|pause|resume|remove] [ID]`: the schedule from a terminal.

It edits HOME/jobs.db directly, whether or not the daemon runs; a running daemon notices
within `schedule.poll_s`. Receipts come from the store (agentd.db).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

ACTIONS = ("list", "history", "run", "pause", "resume", "remove")


def add_jobs_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `jobs` to agentd's subcommands (`sub` from add_subparsers; `common` holds --home etc.)."""
    jobs = sub.add_parser("jobs", parents=[common], help="scheduled jobs: list, history, run, pause, resume, remove")
    jobs.add_argument("action", nargs="?", choices=ACTIONS, default="list",
                      help="list (default): jobs and next runs; history: run receipts; run/pause/resume/remove ID")
    jobs.add_argument("id", nargs="?", help="the job (history: only this job's runs)")
    jobs.add_argument("-n", "--limit", type=int, default=20, help="history: how many runs to show (default 20)")
    jobs.set_defaults(handler=cmd_jobs)
    return jobs


def cmd_jobs(args: argparse.Namespace) -> int:
    """Carry out `agentd jobs ...`; the exit code."""
    from agent.schedule.scheduler import ScheduleError, Scheduler
    from agent.store import Store

    settings, home = _context(args)
    if args.action in ("run", "pause", "resume", "remove") and not args.id:
        print(f"agentd jobs {args.action} needs a job id (`agentd jobs` lists them)", file=sys.stderr)
        return 2
    with Store.open_in(home) as store:
        scheduler = Scheduler.offline(home, settings, store)
        try:
            if args.action == "list":
                return show_jobs(scheduler, settings, store)
            if args.action == "history":
                return show_history(store, scheduler.tz, args.limit, args.id)
            info = getattr(scheduler, "run_now" if args.action == "run" else args.action)(args.id)
        except ScheduleError as exc:
            print(f"agentd: {exc}", file=sys.stderr)
            return 1
        finally:
            scheduler.shutdown()
    print(f"{args.action}: {info.id} ({info.kind} \"{info.label}\")" + _daemon_note(home, args.action, settings))
    return 0


def show_jobs(scheduler: Any, settings: Any, store: Any) -> int:
    """Every job with its next run, then config problems and runs nobody was told about."""
    from agent.schedule.automations import load_automations
    from agent.schedule.watch import late_announcement

    jobs = scheduler.jobs()
    if not jobs:
        print("Nothing is scheduled.")
    rows = [(j.id, j.kind, _when(j.next_run, scheduler.tz) if j.next_run else j.state, j.when, j.label) for j in jobs]
    _table(("ID", "KIND", "NEXT RUN", "TRIGGER", "WHAT"), rows)
    _, problems = load_automations(settings.automations, tz=scheduler.tz)  # tools are checked by the daemon
    if problems:
        print("\nAutomations that did not load:")
        print("\n".join(f"  {p}" for p in problems))
    pending = store.unreported_receipts()
    if pending:
        print("\nNot yet told:")
        print("\n".join(f"  {late_announcement(r, scheduler.tz).text}" for r in pending))
        store.mark_reported(r.id for r in pending)
    return 0


def show_history(store: Any, tz: Any, limit: int, job_id: str | None) -> int:
    """Run receipts, newest first."""
    receipts = store.receipts(limit=limit, job_id=job_id)
    if not receipts:
        print("No runs yet." if job_id is None else f"No runs of {job_id!r} yet.")
    rows = [
        (_when(r.scheduled, tz), "-" if r.late_s is None else f"{r.late_s:.3f} s", r.job_id, r.outcome,
         _short(" | ".join(x for x in (r.output, r.detail) if x)))
        for r in receipts
    ]
    _table(("DUE", "LATE BY", "JOB", "OUTCOME", "OUTPUT / DETAIL"), rows)
    return 0


def _context(args: argparse.Namespace) -> tuple[Any, Any]:
    """Settings and home folder from the common options (as agentd's other commands read them)."""
    from agent.config.paths import resolve_home, select_user_config
    from agent.config.settings import settings_or_defaults

    home = resolve_home(getattr(args, "home", None))
    # jobs.db and the receipts need no valid config: a typo must not hide the schedule
    settings, problem = settings_or_defaults(select_user_config(home, getattr(args, "config", None)))
    if problem:
        print(f"agentd: {problem} (jobs shown with the default settings; `agentd doctor` checks the config)",
              file=sys.stderr)
    return settings, home


def _daemon_note(home: Any, action: str, settings: Any) -> str:
    from agent.daemon.process import running_pid

    if running_pid(home) is not None:
        return f"; the running agentd applies it within {settings.schedule.poll_s:g} s"
    return "; agentd is not running: it runs when agentd starts" if action == "run" else ""


def _table(header: tuple, rows: list[tuple]) -> None:
    if not rows:
        return
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _when(moment: datetime, tz: Any) -> str:
    return f"{moment.astimezone(tz):%a %d %b %H:%M %Z}"


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
