"""`kill -9` while jobs are being written, 20 times: jobs.db opens cleanly with exactly the committed jobs."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone

from agent.schedule import JOBS_DB, Scheduler
from agent.config.settings import load_settings

ROUNDS = 20


def write_jobs(home: str, round_number: int, pipe) -> None:
    """The victim: add reminders as fast as it can, saying before and after each commit."""
    scheduler = Scheduler.offline(home, load_settings())
    when = datetime.now(timezone.utc) + timedelta(days=1)
    for i in range(100_000):
        label = f"r{round_number}-{i}"
        pipe.send(("adding", label))
        scheduler.add_reminder(label, when)
        pipe.send(("added", label))
        if i % 7 == 3:  # updates too, not only inserts
            scheduler.pause(scheduler.jobs()[0].id)


def test_kill_9_while_writing_leaves_exactly_the_committed_jobs(tmp_path):
    # forkserver: each victim forks from a clean server process that has imported agentd once, so
    # rounds are quick and no thread of this test process (or MLX on macOS) is forked with them.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["agent.schedule.scheduler", "agent.config.settings"])
    rng = random.Random(7)
    committed: set[str] = set()
    for round_number in range(ROUNDS):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=write_jobs, args=(str(tmp_path), round_number, send), daemon=True)
        child.start()
        send.close()
        wanted, added, in_flight = rng.randint(1, 25), [], None
        while len(added) < wanted:
            what, label = receive.recv()
            if what == "adding":
                in_flight = label
            else:
                added.append(label)
                in_flight = None
        time.sleep(rng.uniform(0, 0.004))  # land anywhere in the next write: a commit takes about a millisecond
        os.kill(child.pid, signal.SIGKILL)
        child.join(5)
        while receive.poll():  # what it said before dying counts too
            try:
                what, label = receive.recv()
            except EOFError:
                break
            if what == "adding":
                in_flight = label
            else:
                added.append(label)
                in_flight = None
        receive.close()
        assert child.exitcode == -signal.SIGKILL

        with sqlite3.connect(tmp_path / JOBS_DB) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        scheduler = Scheduler.offline(tmp_path, load_settings())
        try:
            stored = {job.label for job in scheduler.jobs()}  # every row unpickles
        finally:
            scheduler.shutdown()
        committed.update(added)
        # The one it was writing when killed is there if its commit finished, else not at all.
        extra = stored - committed
        assert committed <= stored and extra <= {in_flight}, (round_number, extra, committed - stored)
        committed |= extra
    assert len(committed) >= ROUNDS
