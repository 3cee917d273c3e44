"""The schedule: lateness of 100 jobs due in the same second, and start-up with 1,000 stored jobs."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import median, percentile, show

UTC = timezone.utc


def lateness(home: Path, jobs: int = 100, lead_s: float = 1.0) -> dict:
    """Due times and start times of `jobs` reminders all due at the same instant, from their receipts."""
    from agent.schedule import Runtime, Scheduler
    from agent.config.settings import load_settings
    from agent.store import Store

    settings = load_settings()
    with Store.open_in(home) as store:
        scheduler = Scheduler(home, settings, runtime=Runtime(store=store, notify=lambda announcement: True))

        async def go() -> None:
            service = asyncio.create_task(scheduler.serve())
            while not scheduler.running:
                await asyncio.sleep(0.001)
            due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead_s + 1)
            for i in range(jobs):
                scheduler.add_reminder(f"job {i}", due)
            while len(store.receipts(limit=jobs)) < jobs:
                await asyncio.sleep(0.01)
            service.cancel()
            await asyncio.gather(service, return_exceptions=True)
            await asyncio.sleep(0.01)

        asyncio.run(go())
        late_ms = [r.late_s * 1000 for r in store.receipts(limit=jobs)]
    return {
        "jobs_due_together": jobs,
        "late_p50_ms": round(percentile(late_ms, 50), 2),
        "late_p99_ms": round(percentile(late_ms, 99), 2),
        "late_max_ms": round(max(late_ms), 2),
        "late_goal": "p99 <= 50 ms",
    }


def startup(home: Path, stored: int = 1000, repeats: int = 3) -> dict:
    """Time to open jobs.db, start apscheduler, sync automations and list every job, with `stored` jobs."""
    from apscheduler.triggers.interval import IntervalTrigger

    from agent.schedule import Runtime, Scheduler
    from agent.schedule.triggers import cron_trigger
    from agent.config.settings import load_settings
    from agent.store import Store

    settings = load_settings(overrides={"automations": [
        {"id": f"auto-{i}", "trigger": {"cron": f"{i % 60} {i % 24} * * *"}, "action": {"say": f"automation {i}"}}
        for i in range(20)
    ]})
    with Store.open_in(home) as store:
        filler = Scheduler.offline(home, settings, store)
        later = datetime.now(UTC) + timedelta(days=30)
        for i in range(stored):  # a mix of what the agent makes: reminders, daily and hourly prompts
            if i % 3 == 0:
                filler.add_reminder(f"reminder {i}", later + timedelta(minutes=i))
            elif i % 3 == 1:
                filler.add_prompt(f"prompt {i}", cron_trigger(f"{i % 60} {i % 24} * * *", filler.tz), "cron")
            else:
                filler.add_prompt(f"prompt {i}", IntervalTrigger(hours=1 + i % 12), "every")
        filler.shutdown()

        def once() -> tuple[float, float, int]:
            scheduler = Scheduler(home, settings, runtime=Runtime(store=store))

            async def go() -> tuple[float, float, int]:
                begin = time.perf_counter()
                scheduler.start()
                scheduler.sync_automations()
                await asyncio.sleep(0)  # the first look for due jobs runs on the loop
                started = time.perf_counter() - begin
                listed = len(scheduler.jobs())
                listing = time.perf_counter() - begin - started
                scheduler.shutdown()
                await asyncio.sleep(0)
                return started, listing, listed

            return asyncio.run(go())

        runs = [once() for _ in range(repeats)]
    return {
        "stored_jobs": runs[0][2],
        "startup_ms": round(median([r[0] for r in runs]) * 1000, 1),
        "list_all_ms": round(median([r[1] for r in runs]) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100, help="jobs due at the same instant")
    parser.add_argument("--stored", type=int, default=1000, help="jobs in jobs.db for the start-up figure")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentd-bench-") as first, tempfile.TemporaryDirectory(prefix="agentd-bench-") as second:
        result = {**lateness(Path(first), args.jobs), **startup(Path(second), args.stored, args.repeats)}
    return show(result)


if __name__ == "__main__":
    main()
