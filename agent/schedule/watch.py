"""Keeping watch while the daemon runs: a sleeping machine, edits from `agentd jobs`, untold runs.

apscheduler waits for the next job with `loop.call_later`, which counts monotonic time; a
machine that sleeps stops that clock, so after waking the wait would run on for as long as it
slept. The watch notices the wall clock jumping ahead of the monotonic one and checks due jobs
at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from agent.schedule.spec import Announcement

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the clocks are compared; cheap, so small


class ClockWatch:
    """Tells how far the wall clock ran ahead of the monotonic clock since the last look."""

    def __init__(self, threshold_s: float, *, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self.threshold_s = threshold_s
        self.wall, self.mono = wall, mono
        self._wall, self._mono = wall(), mono()

    def jumped(self) -> float:
        """Seconds the wall clock gained beyond the threshold since the last call (0.0 if none)."""
        wall, mono = self.wall(), self.mono()
        gained = (wall - self._wall) - (mono - self._mono)
        self._wall, self._mono = wall, mono
        return gained if gained > self.threshold_s else 0.0


async def keep_watch(scheduler: Any, watch: ClockWatch | None = None) -> None:
    """Until cancelled: after a sleep, and every schedule.poll_s, look at jobs.db and report."""
    watch = watch or ClockWatch(scheduler.settings.schedule.sleep_jump_s)
    last_look = time.monotonic()
    await report_pending(scheduler)
    while True:
        await asyncio.sleep(min(TICK_S, scheduler.settings.schedule.poll_s))
        gained = watch.jumped()
        if gained:
            log.info("the wall clock jumped %.0f s ahead (the machine slept?): checking due jobs now", gained)
        if gained or time.monotonic() - last_look >= scheduler.settings.schedule.poll_s:
            last_look = time.monotonic()
            scheduler.wakeup()
            await report_pending(scheduler)


async def report_pending(scheduler: Any) -> int:
    """Tell people about missed runs and reminders nobody heard; each is told once. How many."""
    store, runtime = scheduler.runtime.store, scheduler.runtime
    if store is None or runtime.notify is None:
        return 0
    pending = await asyncio.to_thread(store.unreported_receipts)
    told = [r.id for r in pending if await scheduler.runner.announce(late_announcement(r, scheduler.tz))]
    if told:
        await asyncio.to_thread(store.mark_reported, told)
    return len(told)


def late_announcement(receipt: Any, tz: Any) -> Announcement:
    """What to say about a run that nobody was told of when it happened (or did not)."""
    due = f"{receipt.scheduled.astimezone(tz):%a %d %b %H:%M}"
    if receipt.outcome == "missed":
        text = f"Missed while agentd was off or asleep: {receipt.kind} {receipt.job_id} was due {due}: {receipt.output}"
        kind = "missed"
    else:
        text = f"Earlier {receipt.kind} ({due}): {receipt.output}"
        kind = "late"
    return Announcement(job_id=receipt.job_id, kind=kind, text=text,
                        speak=receipt.kind in ("reminder", "timer"), scheduled=receipt.scheduled)
