"""The schedule running for real: receipts, restarts, late and missed runs, sleep, no double starts."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.events import ReplyDone
from agent.schedule import Runtime, Scheduler
from agent.schedule import watch as watch_module
from agent.schedule.watch import ClockWatch, report_pending
from agent.config.settings import load_settings
from agent.store import Store
from fakes import run, until
from scheduling import serving

UTC = timezone.utc


def settings(automations=None, **schedule):
    overrides = {f"schedule.{key}": value for key, value in schedule.items()}
    return load_settings(overrides={**overrides, "automations": automations})


class Listener:
    """Stands in for the daemon's clients: records announcements; `present` says if anyone heard."""

    def __init__(self, present: bool = True):
        self.present = present
        self.heard = []

    def __call__(self, announcement) -> bool:
        if self.present:
            self.heard.append(announcement)
        return self.present

    def texts(self) -> list[str]:
        return [a.text for a in self.heard]


@pytest.fixture
def store(tmp_path):
    with Store.open_in(tmp_path) as opened:
        yield opened


def make(tmp_path, store, listener=None, automations=None, **schedule) -> Scheduler:
    return Scheduler(tmp_path, settings(automations, **schedule), runtime=Runtime(store=store, notify=listener or Listener()))


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_reminder_fires_once_with_a_receipt(tmp_path, store):
    listener = Listener()

    async def go():
        async with serving(make(tmp_path, store, listener)) as scheduler:
            job = scheduler.add_reminder("call mum", soon(0.2))
            await until(lambda: store.receipts())
            await asyncio.sleep(0.2)
            return job, scheduler.jobs()

    job, left = run(go())
    [receipt] = store.receipts()
    assert (receipt.job_id, receipt.kind, receipt.outcome, receipt.output) == (job.id, "reminder", "ok", "Reminder: call mum")
    assert 0 <= receipt.late_s < 0.5 and receipt.reported
    assert listener.texts() == ["Reminder: call mum"] and listener.heard[0].speak
    assert left == []  # a one-off job is gone once it ran


def test_jobs_and_receipts_survive_a_restart(tmp_path, store):
    async def first():
        async with serving(make(tmp_path, store)) as scheduler:
            later = scheduler.add_reminder("dentist", soon(3600))
            daily = scheduler.add_prompt("Summarise the news", IntervalTrigger(days=1), "every 1d")
            scheduler.add_timer(timedelta(seconds=0.1), "tea")
            await until(lambda: store.receipts())
            return {j.id: j.next_run for j in scheduler.jobs()}, {later.id, daily.id}

    before, ids = run(first())
    store.close()
    with Store.open_in(tmp_path) as reopened:
        async def second():
            async with serving(make(tmp_path, reopened)) as scheduler:
                return {j.id: j.next_run for j in scheduler.jobs()}

        assert run(second()) == before and set(before) == ids
        assert [r.output for r in reopened.receipts()] == ["Timer done: tea (0 s)"]


def test_runs_due_while_agentd_was_down_run_late_or_are_recorded_as_missed(tmp_path, store):
    tick = [{"id": "tick", "trigger": {"every": "1m"}, "action": {"say": "tick"}}]
    offline = Scheduler.offline(tmp_path, settings(tick), store)
    late = offline.add_reminder("stretch", datetime.now(UTC) - timedelta(seconds=30))  # grace: 6 h
    missed = offline.add_prompt("Water the garden", DateTrigger(datetime.now(UTC) - timedelta(hours=2)), "at ...")  # grace: 10 min
    offline.sync_automations()
    offline.aps.modify_job("tick", "config", next_run_time=datetime.now(UTC) - timedelta(minutes=10, seconds=30))
    offline.shutdown()
    nobody = Listener(present=False)

    async def go():
        async with serving(make(tmp_path, store, nobody, tick)) as scheduler:
            await until(lambda: len(store.receipts()) == 3)
            return scheduler

    scheduler = run(go())
    receipts = {r.job_id: r for r in store.receipts()}
    assert receipts[late.id].outcome == "ok" and 29 < receipts[late.id].late_s < 40
    assert receipts[missed.id].outcome == "missed" and receipts[missed.id].started is None
    assert receipts[missed.id].detail.startswith("missed by 2 h 0 min (grace 600 s)")
    tick = receipts["tick"]  # coalesced: one run for the ten it missed, and the receipt says so
    assert tick.outcome == "ok" and "10 earlier run(s)" in tick.detail and "merged into this one" in tick.detail

    # Nobody was there: the missed run and the unheard reminder wait to be told, once.
    assert {r.job_id for r in store.unreported_receipts()} == {late.id, missed.id, "tick"}
    listener = Listener()
    scheduler.runtime.notify = listener
    assert run(report_pending(scheduler)) == 3
    assert run(report_pending(scheduler)) == 0
    assert any(t.startswith("Missed while agentd was off or asleep: prompt") for t in listener.texts())
    assert any(t.startswith("Earlier reminder") and t.endswith("Reminder: stretch") for t in listener.texts())


def test_after_a_sleep_due_jobs_are_checked_at_once(tmp_path, store, monkeypatch):
    monkeypatch.setattr(watch_module, "TICK_S", 0.02)
    start, wall = time.monotonic(), [time.time()]
    clocks = ClockWatch(3.0, wall=lambda: wall[0] + time.monotonic() - start, mono=time.monotonic)
    scheduler = Scheduler(tmp_path, settings(poll_s=3600), runtime=Runtime(store=store, notify=Listener()), clock_watch=clocks)

    async def go():
        async with serving(scheduler):
            # A job the running scheduler has no timer for, as after a sleep: its time passed while
            # the machine slept, but the loop's timer (monotonic) still waits.
            other = Scheduler.offline(tmp_path, scheduler.settings, store)
            job = other.add_reminder("after the nap", datetime.now(UTC) - timedelta(seconds=1))
            other.shutdown()
            await asyncio.sleep(0.3)
            assert store.receipts() == []  # no poll for an hour, no timer: it would wait
            wall[0] += 600  # the machine wakes 10 minutes later by the wall clock
            woke = time.monotonic()
            await until(lambda: store.receipts(), timeout=2)
            return job, time.monotonic() - woke

    job, took = run(go())
    assert store.receipts()[0].job_id == job.id and took < 0.5


def test_edits_from_agentd_jobs_reach_the_running_schedule(tmp_path, store):
    async def go():
        async with serving(make(tmp_path, store, poll_s=0.1)) as scheduler:
            job = scheduler.add_reminder("later", soon(3600))
            other = Scheduler.offline(tmp_path, scheduler.settings, store)
            other.run_now(job.id)
            other.shutdown()
            await until(lambda: store.receipts(), timeout=3)
            return job

    job = run(go())
    assert store.receipts()[0].job_id == job.id


def test_a_run_still_going_is_not_started_again(tmp_path, store):
    started = []

    async def slow_submit(text, *, who, confirm=None, **_):
        started.append(time.monotonic())
        await asyncio.sleep(1.0)
        yield ReplyDone(text="done")

    scheduler = Scheduler(tmp_path, settings(), runtime=Runtime(store=store, submit=slow_submit, notify=Listener()))

    async def go():
        async with serving(scheduler):
            scheduler.add_prompt("slow", IntervalTrigger(seconds=0.3), "every 0.3s")
            await until(lambda: any(r.outcome == "ok" for r in store.receipts()), timeout=3)

    run(go())
    outcomes = [r.outcome for r in store.receipts()]
    assert len(started) == 1 and "skipped" in outcomes
    assert all(r.detail == "the previous run was still going (max_instances = 1)" for r in store.receipts() if r.outcome == "skipped")


def test_a_state_trigger_fires_through_the_scheduler_with_a_receipt(tmp_path, store):
    """The extension point home control will use: it watches devices and calls fire()."""
    automations = [{"id": "door-open", "trigger": {"state": {"device": "front door", "to": "open", "for": "5m"}},
                    "action": {"say": "The front door has been open for 5 minutes"}}]
    handed = []
    listener = Listener()
    scheduler = Scheduler(tmp_path, settings(automations), runtime=Runtime(store=store, notify=listener), state_hook=handed.extend)

    async def go():
        async with serving(scheduler):
            [automation] = handed
            await scheduler.fire(automation.id, automation.spec)

    run(go())
    [receipt] = store.receipts()
    assert (receipt.job_id, receipt.outcome, receipt.late_s < 0.1) == ("door-open", "ok", True)
    assert listener.texts() == ["The front door has been open for 5 minutes"]
