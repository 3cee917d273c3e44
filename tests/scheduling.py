"""Helpers for schedule tests."""

import asyncio
import contextlib

from agent.schedule import Scheduler
from fakes import until


@contextlib.asynccontextmanager
async def serving(scheduler: Scheduler):
    """The scheduler as the daemon runs it (a service task) for the body of the block."""
    task = asyncio.create_task(scheduler.serve())
    await until(lambda: scheduler.running or task.done())
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)  # apscheduler's shutdown runs on the loop
