"""Scheduled turns with a real Agent, real tools and a scripted model; the agent's schedule tools."""

from __future__ import annotations

import importlib
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from agent.daemon.core import store_hooks
from agent.events import ToolFinished
from agent.schedule import Runtime, Scheduler, local_submit
from agent.config.settings import load_settings
from agent.store import Store
from agent.tools import SystemClock, ToolRegistry, tool
from agent.turn import Agent
from fakes import home, make, run, running, until  # noqa: F401  (home is a fixture)
from scheduling import serving
from agent.testkit.scripted_llm import ScriptedLLM, xml_call
from tools import CORE_TOOL_MODULES

UTC = timezone.utc
UNLOCKED: list[str] = []


@tool(risk="confirm")
def unlock_door(door: str) -> str:
    """Unlock a door.

    Args:
        door: Which door.
    """
    UNLOCKED.append(door)
    return f"{door} door unlocked"


def registry() -> ToolRegistry:
    found = ToolRegistry()
    for name in (*CORE_TOOL_MODULES, "tools.schedule"):
        found.add_module(importlib.import_module(name))
    found.add(unlock_door)
    return found


def settings(automations=None, zone="Europe/Berlin"):
    return load_settings(overrides={"automations": automations, "agent.timezone": zone})


def agent_for(store, outputs, config) -> Agent:
    return Agent(llm=ScriptedLLM(outputs), registry=registry(), system_prompt="You are a test.", store=store,
                 settings=config, clock=SystemClock(config.agent.tzinfo()))


def unlock_at(moment: datetime, allow=()) -> list[dict]:
    return [{"id": "night-lock", "trigger": {"at": moment.isoformat()}, "action": {"prompt": "Unlock the front door"},
             "allow": list(allow)}]


class Listener:
    def __init__(self):
        self.heard = []

    def __call__(self, announcement) -> bool:
        self.heard.append(announcement)
        return True


@pytest.fixture(autouse=True)
def nothing_unlocked():
    UNLOCKED.clear()


SCRIPT = [xml_call("unlock_door", door="front"), "I could not unlock the front door."]


def test_a_scheduled_prompt_is_denied_a_confirm_tier_tool_at_once(home):
    """Through the real daemon: nobody to ask, so the tool is denied, the receipt and audit say so."""
    due = datetime.now(UTC) + timedelta(seconds=0.3)
    config = settings(unlock_at(due))
    with Store.open_in(home) as store:
        agent = agent_for(store, SCRIPT, config)

        async def go():
            async with running(make(home, agent, **store_hooks(store))) as daemon:
                runtime = Runtime(store=store, registry=agent.registry, settings=config, submit=daemon.submit, notify=Listener())
                async with serving(Scheduler(home, config, runtime=runtime)):
                    await until(lambda: store.receipts(), timeout=5)
                    return time.monotonic()

        run(go())
        [receipt] = store.receipts()
        audit = [e for e in store.audit_entries() if e.tool == "unlock_door"]
    assert receipt.outcome == "denied" and receipt.job_id == "night-lock"
    assert "denied: unlock_door" in receipt.detail and receipt.output == "I could not unlock the front door."
    finished = receipt.started + timedelta(seconds=receipt.duration_s)
    assert (finished - receipt.scheduled).total_seconds() < 1.0  # denied within a second of being due
    assert UNLOCKED == []
    assert {(e.outcome, e.who) for e in audit} >= {("denied", "schedule:night-lock")}


def test_allow_lets_a_scheduled_prompt_use_that_tool(tmp_path):
    config = settings(unlock_at(datetime.now(UTC) + timedelta(seconds=0.2), allow=["unlock_door"]))
    with Store.open_in(tmp_path) as store:
        agent = agent_for(store, [xml_call("unlock_door", door="front"), "Done."], config)
        runtime = Runtime(store=store, registry=agent.registry, settings=config, submit=local_submit(agent), notify=Listener())

        async def go():
            async with serving(Scheduler(tmp_path, config, runtime=runtime)):
                await until(lambda: store.receipts(), timeout=5)

        run(go())
        [receipt] = store.receipts()
        audit = [(e.outcome, e.who) for e in store.audit_entries() if e.tool == "unlock_door"]
    assert (receipt.outcome, receipt.output) == ("ok", "Done.") and UNLOCKED == ["front"]
    assert audit == [("ok", "schedule:night-lock")]
    assert runtime.notify.heard[0].kind == "prompt" and runtime.notify.heard[0].text == "Done."


def test_allow_works_through_the_daemon_too(home):
    config = settings(unlock_at(datetime.now(UTC) + timedelta(seconds=0.2), allow=["unlock_door"]))
    with Store.open_in(home) as store:
        agent = agent_for(store, [xml_call("unlock_door", door="front"), "Done."], config)

        async def go():
            async with running(make(home, agent, **store_hooks(store))) as daemon:
                runtime = Runtime(store=store, registry=agent.registry, settings=config, submit=daemon.submit, notify=Listener())
                async with serving(Scheduler(home, config, runtime=runtime)):
                    await until(lambda: store.receipts(), timeout=5)

        run(go())
        assert store.receipts()[0].outcome == "ok" and UNLOCKED == ["front"]


def test_a_direct_tool_action_runs_without_the_model_and_is_audited(tmp_path):
    due = (datetime.now(UTC) + timedelta(seconds=0.2)).isoformat()
    automations = [
        {"id": "sum", "trigger": {"at": due}, "action": {"tool": "calculate", "args": {"expression": "6*7"}}},
        {"id": "unlock", "trigger": {"at": due}, "action": {"tool": "unlock_door", "args": {"door": "back"}}, "allow": ["unlock_door"]},
        # a tool that needs the schedule: the scheduler hands itself to its jobs' tool calls
        {"id": "tea", "trigger": {"at": due}, "action": {"tool": "set_timer", "args": {"duration": "10 minutes"}}},
    ]
    config = settings(automations)
    with Store.open_in(tmp_path) as store:
        runtime = Runtime(store=store, registry=registry(), settings=config)

        async def go():
            async with serving(Scheduler(tmp_path, config, runtime=runtime)) as scheduler:
                await until(lambda: len(store.receipts()) == 3, timeout=5)
                return scheduler.problems

        assert run(go()) == []
        receipts = {r.job_id: (r.outcome, r.output) for r in store.receipts()}
        audit = {(e.tool, e.outcome, e.who) for e in store.audit_entries()}
    tea = receipts.pop("tea")
    assert receipts == {"sum": ("ok", "6*7 = 42"), "unlock": ("ok", "back door unlocked")}
    assert tea[0] == "ok" and tea[1].startswith("Timer timer-"), tea
    assert audit == {("calculate", "ok", "schedule:sum"), ("unlock_door", "ok", "schedule:unlock"),
                     ("set_timer", "ok", "schedule:tea")}


# -- the agent's tools -----------------------------------------------------------------------


async def turn(agent: Agent, text: str) -> list:
    return [event async for event in agent.respond(text, who="chat")]


def test_the_reminder_tool_end_to_end_through_a_turn(tmp_path):
    config = settings()
    with Store.open_in(tmp_path) as store:
        agent = agent_for(store, [
            xml_call("set_reminder", text="take the bread out", at="in 1 second"), "I will remind you.",
            xml_call("set_reminder", text="call mum", at="6 pm"), "Reminder set for 6 pm.",
        ], config)
        listener = Listener()
        scheduler = Scheduler(tmp_path, config, runtime=Runtime(store=store, registry=agent.registry, notify=listener))
        agent.schedule = scheduler  # as the daemon hands its schedule to the agent

        async def go():
            async with serving(scheduler):
                first = await turn(agent, "remind me to take the bread out in a second")
                second = await turn(agent, "remind me at 6 pm to call mum")
                await until(lambda: store.receipts(), timeout=5)
                return first, second

        first, second = run(go())
        results = [e.result for e in first + second if isinstance(e, ToolFinished)]
        assert results[0].startswith("Reminder reminder-") and results[0].endswith(": take the bread out")
        assert "18:00 (6:00 PM), timezone Europe/Berlin" in results[1]
        assert [a.text for a in listener.heard] == ["Reminder: take the bread out"]
        assert store.receipts()[0].outcome == "ok"

        # The 6 pm reminder is a persistent job: a fresh process finds it in jobs.db.
        offline = Scheduler.offline(tmp_path, config, store)
        [job] = offline.jobs()
        offline.shutdown()
    assert job.label == "call mum" and job.kind == "reminder"
    assert job.next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 18


def test_schedule_tools_list_and_cancel_only_the_agents_own_jobs(tmp_path):
    config = settings([{"id": "plants", "trigger": {"every": "2 days"}, "action": {"say": "Water the plants"}}])
    reg = registry()

    async def call(name, schedule=None, **arguments):
        from agent.tools import ToolContext, ToolError

        tool_ = reg.get(name)
        ctx = ToolContext(settings=config, clock=SystemClock(ZoneInfo("Europe/Berlin")), schedule=schedule)
        try:
            return await tool_.call(tool_.validate(arguments), ctx)
        except ToolError as exc:
            return f"Error: {exc}"

    async def go():
        outside = await call("list_schedules")
        with Store.open_in(tmp_path) as store:
            async with serving(Scheduler(tmp_path, config, runtime=Runtime(store=store))) as s:
                timer = await call("set_timer", s, duration="10 minutes", label="pasta")
                prompt = await call("schedule_prompt", s, prompt="Read me the news", cron="0 7 * * 1-5")
                both = await call("schedule_prompt", s, prompt="x", cron="0 7 * * *", every="1h")
                listing = await call("list_schedules", s)
                job_id = timer.split()[1]
                refused = await call("cancel_schedule", s, id="plants")
                cancelled = await call("cancel_schedule", s, id=job_id)
                past = await call("set_reminder", s, text="x", at="2020-01-01 10:00")
            stopped = await call("list_schedules", s)  # handed in, but no longer running
            return outside, timer, prompt, both, listing, refused, cancelled, past, stopped

    outside, timer, prompt, both, listing, refused, cancelled, past, stopped = run(go())
    assert outside == stopped == "Error: the schedule is not running (it runs inside `agentd run`)"
    assert timer.startswith("Timer timer-") and "set for 10 min" in timer
    assert prompt.startswith("Scheduled prompt-") and "(cron 0 7 * * 1-5)" in prompt
    assert both == "Error: give exactly one of cron, every or at (got cron, every)"
    assert "plants: automation \"plants\"" in listing and "(from the config file)" in listing and "pasta" in listing
    assert refused == "Error: 'plants' is an automation from the config file; remove it there"
    assert cancelled.startswith(f"Cancelled {timer.split()[1]}: timer")
    assert past.startswith("Error: ") and "has already passed" in past
