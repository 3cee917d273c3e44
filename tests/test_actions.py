"""One executor for every door: the same misbehaving tool gives the same outcome and the same
single audit row whether a model turn, the phrase path or the schedule asked for it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from agent.actions import Action, Executor
from agent.daemon.confirm import ConfirmDecision
from agent.events import ReplyDone, ToolFinished
from agent.skills.intents import IntentMatcher
from agent.schedule.runner import Runner, Runtime
from agent.config.settings import load_settings
from agent.skills.loader import load_skills
from agent.store import Store
from agent.tools import ToolRegistry
from agent.turn import Agent, TurnLimits
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

SKILL = """\
---
name: gremlins
description: Tools that misbehave, one way each.
phrases:
  - {template: "run the crashing gremlin", tool: crashing_gremlin}
  - {template: "run the hanging gremlin", tool: hanging_gremlin}
  - {template: "run the chatty gremlin", tool: chatty_gremlin}
  - {template: "run the failing gremlin", tool: failing_gremlin}
  - {template: "run the locking gremlin", tool: locking_gremlin}
  - {template: "run the fine gremlin", tool: fine_gremlin}
---
Gremlins.
"""
TOOLS = '''\
import asyncio

from agent import ToolError, tool

RAN = []


@tool
def crashing_gremlin() -> str:
    """Raises a bug."""
    RAN.append("crashing")
    raise RuntimeError("boom")


@tool
async def hanging_gremlin() -> str:
    """Never answers."""
    RAN.append("hanging")
    await asyncio.sleep(3600)
    return "never"


@tool
def chatty_gremlin() -> str:
    """Returns a megabyte."""
    RAN.append("chatty")
    return "x" * 1_000_000


@tool
def failing_gremlin() -> str:
    """Fails the expected way."""
    RAN.append("failing")
    raise ToolError("the gremlin is offline")


@tool(risk="confirm")
def locking_gremlin() -> str:
    """Needs a yes first."""
    RAN.append("locking")
    return "locked"


@tool
def fine_gremlin() -> str:
    """Works."""
    RAN.append("fine")
    return "all good"
'''
# (tool, the executor's status, what the result starts with)
CASES = [
    ("crashing", "crashed", "Error: the tool crashing_gremlin failed unexpectedly (RuntimeError)"),
    ("hanging", "timeout", "Error: the tool hanging_gremlin did not finish within 0.3 s"),
    ("chatty", "ok", "x" * 200),
    ("failing", "error", "Error: the gremlin is offline"),
    ("locking", "denied", "Denied: the user did not confirm"),
    ("fine", "ok", "all good"),
]
LIMITS = TurnLimits(tool_timeout_s=0.3, tool_output_max_chars=200)


@pytest.fixture
def gremlins(tmp_path):
    folder = tmp_path / "bundled" / "gremlins"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(SKILL, encoding="utf-8")
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    skills = load_skills(load_settings(), tmp_path, bundled_dir=tmp_path / "bundled")
    registry = ToolRegistry()
    skills.register(registry)
    matcher = IntentMatcher.from_skills(skills, registry, {})
    assert matcher.problems == []
    store = Store(tmp_path / "agentd.db")
    yield registry, matcher, store, skills.get("gremlins").tools[0].function.__globals__["RAN"]
    store.close()


async def by_turn(registry, matcher, store, name):
    agent = Agent(llm=ScriptedLLM([xml_call(f"{name}_gremlin"), "done"]), registry=registry, system_prompt="test",
                  store=store, limits=LIMITS)
    return [e async for e in agent.respond(f"please {name}")]


async def by_phrase(registry, matcher, store, name):
    agent = Agent(llm=ScriptedLLM([]), registry=registry, system_prompt="test", store=store, limits=LIMITS)
    agent.intents = matcher
    return [e async for e in agent.respond(f"run the {name} gremlin")]


async def by_schedule(registry, matcher, store, name):
    settings = load_settings(overrides={"agent.tool_timeout_s": 0.3, "agent.tool_output_max_chars": 200})
    runner = Runner(Runtime(store=store, registry=registry, settings=settings))
    spec = {"kind": "automation", "action": {"tool": f"{name}_gremlin", "args": {}}}
    await runner.execute("j1", spec, datetime.now(timezone.utc))
    return []


@pytest.mark.parametrize("door", [by_turn, by_phrase, by_schedule])
@pytest.mark.parametrize("name,status,result", CASES)
def test_every_door_gets_the_same_outcome_and_one_audit_row(gremlins, door, name, status, result):
    registry, matcher, store, ran = gremlins
    events = asyncio.run(door(registry, matcher, store, name))
    rows = store.audit_entries()
    assert [(r.tool, r.outcome) for r in rows] == [(f"{name}_gremlin", status)]
    assert ran == ([] if status == "denied" else [name])
    finished = [e for e in events if isinstance(e, ToolFinished)]
    if door is not by_schedule:  # the schedule's door reports through its receipt instead
        assert [(f.outcome, f.ok, f.result[:len(result)]) for f in finished] == [(status, status == "ok", result)]
        assert len(finished[0].result) <= 200 + 40  # the cap, and its note
        assert isinstance(events[-1], ReplyDone)
    else:
        receipt = store.receipts(limit=1)[0]
        assert receipt.outcome == {"ok": "ok", "denied": "denied"}.get(status, "error")


def test_a_confirmation_reason_lands_in_the_one_audit_row(gremlins):
    registry, _, store, ran = gremlins

    async def timed_out(tool, arguments):
        return ConfirmDecision(request_id="r", who="chat", conversation_id=None, tool=tool.name, arguments=arguments,
                               risk=tool.risk, approved=False, reason="timeout", waited_s=30.0)

    outcome = asyncio.run(Executor(registry, store=store).run(Action(tool="locking_gremlin", who="chat"), approve=timed_out))
    assert (outcome.status, outcome.reason) == ("denied", "timeout")
    assert [(r.outcome, r.detail) for r in store.audit_entries()] == [("denied", "timeout")]
    assert ran == []


def test_a_stopped_turn_cancels_the_running_tool_and_records_it(gremlins):
    registry, _, store, ran = gremlins

    async def go():
        cancel = asyncio.Event()
        run = asyncio.create_task(Executor(registry, store=store, timeout_s=60).run(Action(tool="hanging_gremlin"), cancel=cancel))
        await asyncio.sleep(0.1)
        cancel.set()
        return await run

    outcome = asyncio.run(go())
    assert outcome.status == "cancelled" and ran == ["hanging"]
    assert [r.outcome for r in store.audit_entries()] == ["cancelled"]


def test_a_cancelled_caller_still_leaves_its_row(gremlins):
    registry, _, store, _ = gremlins

    async def go():
        run = asyncio.create_task(Executor(registry, store=store, timeout_s=60).run(Action(tool="hanging_gremlin")))
        await asyncio.sleep(0.1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(go())
    assert [r.outcome for r in store.audit_entries()] == ["cancelled"]


def test_unknown_tools_and_bad_arguments_are_invalid_and_recorded(gremlins):
    registry, _, store, ran = gremlins
    executor = Executor(registry, store=store)
    unknown = asyncio.run(executor.run(Action(tool="format_disk", arguments={"path": "/"})))
    bad = asyncio.run(executor.run(Action(tool="fine_gremlin", arguments="not an object")))
    assert (unknown.status, bad.status) == ("invalid", "invalid")
    assert "There is no tool named 'format_disk'" in unknown.result
    assert [(r.tool, r.outcome, r.arguments) for r in reversed(store.audit_entries())] == [
        ("format_disk", "invalid", {"path": "/"}), ("fine_gremlin", "invalid", {"raw": "not an object"})]
    assert ran == []


def test_a_second_invalid_call_still_leaves_rows_for_every_attempt(gremlins):
    registry, _, store, ran = gremlins
    llm = ScriptedLLM([xml_call("format_disk", path="/"), xml_call("format_disk", path="/") + xml_call("fine_gremlin")])
    agent = Agent(llm=llm, registry=registry, system_prompt="test", store=store, limits=LIMITS)
    events = asyncio.run(_collect(agent.respond("wipe it")))
    assert (events[-1].stopped_by, events[-1].reason) == ("guard", "invalid_call")
    assert [(r.tool, r.outcome) for r in reversed(store.audit_entries())] == [
        ("format_disk", "invalid"), ("format_disk", "invalid"), ("fine_gremlin", "cancelled")]
    assert ran == []


async def _collect(stream):
    return [e async for e in stream]



def test_a_repeated_call_is_stopped_with_its_reason_and_recorded(gremlins):
    registry, _, store, ran = gremlins
    agent = Agent(llm=ScriptedLLM([xml_call("fine_gremlin")] * 3), registry=registry, system_prompt="test", store=store,
                  limits=LIMITS)
    done = asyncio.run(_collect(agent.respond("again and again")))[-1]
    assert (done.stopped_by, done.reason) == ("guard", "repeated_call")
    assert [r.outcome for r in reversed(store.audit_entries())] == ["ok", "ok", "invalid"]
    assert ran == ["fine", "fine"]


def test_a_tools_data_rides_beside_its_text_and_never_leaves_the_process(tmp_path):
    """A ToolResult's text is what the model reads (plain, capped as any text); its data reaches
    the outcome and the step event for code, and stays out of the event's JSON and IPC frames."""
    from agent import ToolResult, tool
    from agent.events import to_dict
    from agent.ipc.protocol import event_frame

    levels = object()  # any object: data is never serialised

    @tool
    def report_levels() -> str:
        """Reports levels."""
        return ToolResult("levels: " + "x" * 300, levels)

    registry = ToolRegistry()
    registry.add(report_levels)
    executor = Executor(registry, output_max_chars=20)
    outcome = asyncio.run(executor.run(Action(tool="report_levels")))
    assert outcome.ok and outcome.data is levels
    assert type(outcome.result) is str and outcome.result.startswith("levels: xxxxxxxxxxxx\n[... ")
    events = asyncio.run(_steps(executor, Action(tool="report_levels")))
    finished = events[-1]
    assert isinstance(finished, ToolFinished) and finished.data is levels
    assert "data" not in to_dict(finished) and "data" not in event_frame("r1", finished)
    assert to_dict(finished)["result"] == outcome.result


async def _steps(executor, action):
    return [e async for e in executor.steps(action)]
