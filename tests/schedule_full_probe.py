"""Run by test_fault_disk inside `unshare -m`, with HOME on a tiny tmpfs: a reminder falls due
while the disk is full, then space is freed. Prints one JSON object.

`python schedule_full_probe.py HOME`
"""

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from agent.daemon.health import Health  # noqa: E402
from agent.schedule import Runtime, ScheduleError, Scheduler  # noqa: E402
from agent.config.settings import load_settings  # noqa: E402
from disk_full_probe import fill_up  # noqa: E402
from scheduling import serving  # noqa: E402


async def main() -> None:
    home = Path(sys.argv[1])
    health, heard = Health(), []
    settings = load_settings(overrides={"schedule": {"poll_s": 0.5}})
    scheduler = Scheduler(home, settings, runtime=Runtime(store=None, notify=lambda a: heard.append(a.text) or True),
                          health=health)
    report: dict = {}
    async with serving(scheduler):
        scheduler.add_reminder("water the plants", datetime.now(timezone.utc) + timedelta(seconds=1))
        fill_up(home / "filler")
        try:  # what the reminder tool meets: one line for the model to pass on
            scheduler.add_reminder("call mum", datetime.now(timezone.utc) + timedelta(days=1))
            report["add_while_full"] = "added"
        except ScheduleError as exc:
            report["add_while_full"] = str(exc)
        await asyncio.sleep(4)  # due meanwhile, on a full disk
        report.update(heard_while_full=list(heard), problems_while_full=health.problems())
        (home / "filler").unlink()
        freed = time.monotonic()
        while not heard and time.monotonic() - freed < 15:
            await asyncio.sleep(0.1)
        report["ran_after_s"] = round(time.monotonic() - freed, 1)
        await asyncio.sleep(6)  # long enough for a second run, were there one
        report.update(heard=list(heard), problems_after=health.problems(), jobs=[j.id for j in scheduler.jobs()])
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
