"""Turn logic on a scripted model: tool execution, bad model output, guards, confirmation."""

import asyncio
import time

import pytest

from agent import ToolError, ToolRegistry, tool
from agent.events import Note, ReplyDone, TextDelta, ToolFinished, ToolStarted
from agent.turn import Agent, TurnLimits
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

CALLS = []


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    CALLS.append(("add", a, b))
    return a + b


@tool(risk="confirm")
def unlock(door: str) -> str:
    """Unlock a door.

    Args:
        door: Which door.
    """
    CALLS.append(("unlock", door))
    return f"{door} unlocked"


@tool
def flaky(what: str) -> str:
    """Fails on purpose.

    Args:
        what: Either 'expected' or 'bug'.
    """
    if what == "expected":
        raise ToolError("the device is offline")
    raise RuntimeError("boom")


@tool
def chatty() -> str:
    """Returns a lot of text."""
    return "x" * 10_000


@tool
async def slow() -> str:
    """Takes a long time."""
    await asyncio.sleep(5)
    return "late"


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def make_agent(outputs, **kw):
    registry = ToolRegistry()
    for t in (add, unlock, flaky, chatty, slow):
        registry.add(t)
    limits = kw.pop("limits", TurnLimits())
    llm = ScriptedLLM(outputs, delay_s=kw.pop("delay_s", 0.0))
    return Agent(llm=llm, registry=registry, system_prompt="You are a test.", limits=limits, **kw), llm


def run(agent, text="hi", **kw):
    async def collect():
        return [e async for e in agent.respond(text, **kw)]

    return asyncio.run(collect())


def done(events) -> ReplyDone:
    assert isinstance(events[-1], ReplyDone)
    assert sum(isinstance(e, ReplyDone) for e in events) == 1
    return events[-1]


def test_plain_reply_streams_and_finishes():
    agent, llm = make_agent(["Hello there, friend."])
    events = run(agent)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there, friend."
    assert done(events).text == "Hello there, friend."
    assert done(events).stopped_by == "done"
    assert llm.requests[0].messages[0] == {"role": "system", "content": "You are a test."}


def test_tool_call_runs_and_result_goes_back_to_the_model():
    agent, llm = make_agent([xml_call("add", a=2, b=40), "It is 42."])
    events = run(agent)
    started = next(e for e in events if isinstance(e, ToolStarted))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert (started.name, started.arguments, started.risk) == ("add", {"a": 2, "b": 40}, "read")
    assert finished.ok and finished.result == "42"
    second = llm.requests[1].messages
    assert second[-2]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 40}}
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "42"
    assert done(events).text == "It is 42."
    assert not any("<tool_call>" in e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize(
    "bad, expected_in_error",
    [
        ("<tool_call>\nno function here\n</tool_call>", "could not be parsed"),
        (xml_call("subtract", a=1, b=2), "Valid tools: add, unlock, flaky, chatty, slow"),
        (xml_call("add", a="two", b=2), "argument 'a'"),
        (xml_call("add", a=1), "missing required argument 'b'"),
        (xml_call("add", a=1, b=2, c=3), "unknown argument 'c'"),
        (("<tool_call>\n<function=add>\n<parameter=a>\n1", "length"), "cut off at max_tokens"),
    ],
)
def test_bad_tool_call_gets_one_correction(bad, expected_in_error):
    agent, llm = make_agent([bad, xml_call("add", a=1, b=2), "3."])
    events = run(agent)
    notes = [e for e in events if isinstance(e, Note)]
    assert notes and "invalid tool call" in notes[0].text
    error_message = llm.requests[1].messages[-1]
    assert error_message["role"] == "tool" and expected_in_error in error_message["content"]
    assert CALLS == [("add", 1, 2)]  # only the corrected call ran
    assert done(events).text == "3."


def test_second_bad_call_stops_the_turn_without_running_anything():
    agent, llm = make_agent([xml_call("nope"), xml_call("nope"), "never"])
    events = run(agent)
    reply = done(events)
    assert reply.stopped_by == "guard" and "still invalid" in reply.text
    assert CALLS == [] and len(llm.requests) == 2


def test_same_call_three_times_stops():
    call = xml_call("add", a=1, b=1)
    agent, _ = make_agent([call, call, call, "never"])
    reply = done(run(agent))
    assert reply.stopped_by == "guard" and "same arguments 3 times" in reply.text
    assert CALLS == [("add", 1, 1)] * 2


def test_model_call_budget():
    outputs = [xml_call("add", a=i, b=0) for i in range(3)]
    agent, llm = make_agent(outputs, limits=TurnLimits(max_model_calls=3))
    reply = done(run(agent))
    assert reply.stopped_by == "guard" and "3 model calls" in reply.text
    assert len(llm.requests) == 3


def test_wall_clock_budget_stops_a_slow_model():
    agent, _ = make_agent(["a" * 400], delay_s=0.02, limits=TurnLimits(timeout_s=0.3))
    started = time.monotonic()
    events = run(agent)
    assert done(events).stopped_by == "guard"
    assert any("longer than 0.3 s" in e.text for e in events if isinstance(e, Note))
    assert done(events).text.startswith("aaa")  # what was streamed is kept
    assert time.monotonic() - started < 2


def test_wall_clock_budget_stops_a_slow_tool():
    agent, _ = make_agent([xml_call("slow"), "never"], limits=TurnLimits(timeout_s=0.3))
    assert done(run(agent)).stopped_by == "guard"


def test_tool_output_is_capped():
    agent, llm = make_agent([xml_call("chatty"), "ok"], limits=TurnLimits(tool_output_max_chars=100))
    run(agent)
    content = llm.requests[1].messages[-1]["content"]
    assert content.startswith("x" * 100) and "9900 more characters cut" in content


def test_tool_failure_goes_to_the_model_as_text():
    agent, llm = make_agent([xml_call("flaky", what="expected"), xml_call("flaky", what="bug"), "sorry"])
    events = run(agent)
    results = [e for e in events if isinstance(e, ToolFinished)]
    assert [r.ok for r in results] == [False, False]
    assert "the device is offline" in results[0].result
    assert "failed unexpectedly (RuntimeError)" in results[1].result
    assert done(events).text == "sorry"


def test_confirm_tier_is_denied_without_a_confirmer():
    agent, llm = make_agent([xml_call("unlock", door="front"), "I could not."])
    events = run(agent)
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert not finished.ok and "Denied" in finished.result
    assert CALLS == []


def test_confirm_tier_runs_when_confirmed():
    asked = []

    async def yes(t, args):
        asked.append((t.name, args))
        return True

    agent, _ = make_agent([xml_call("unlock", door="front"), "Unlocked."])
    run(agent, confirm=yes)
    assert asked == [("unlock", {"door": "front"})] and CALLS == [("unlock", "front")]


def test_cancel_stops_the_reply():
    cancel = asyncio.Event()
    agent, _ = make_agent(["word " * 200], delay_s=0.001)

    async def go():
        events = []
        async for e in agent.respond("hi", cancel=cancel):
            events.append(e)
            if len(events) == 3:
                cancel.set()
        return events

    events = asyncio.run(go())
    assert done(events).stopped_by == "cancelled"
    assert len(events) < 10


def test_history_is_kept_between_turns_of_a_conversation():
    agent, llm = make_agent(["First answer.", "Second answer."])
    first = run(agent, "one", conversation_id="c1")
    run(agent, "two", conversation_id="c1")
    roles = [m["role"] for m in llm.requests[1].messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert llm.requests[1].messages[2]["content"] == "First answer."
    assert done(first).text == "First answer."


def test_store_keeps_the_conversation_and_audits_every_call(tmp_path):
    from agent.store import Store

    store = Store(tmp_path / "agentd.db")
    agent, _ = make_agent([xml_call("nope"), xml_call("add", a=1, b=2), xml_call("unlock", door="back"), "Done."], store=store)
    events = run(agent, "add and unlock", conversation_id="not-a-real-id")
    assert done(events).text == "Done."
    store.close()

    reopened = Store(tmp_path / "agentd.db")  # a restart keeps everything
    conversation = reopened.latest_conversation()
    roles = [m["role"] for m in reopened.messages(conversation)]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant"]
    outcomes = {(e.tool, e.outcome) for e in reopened.audit_entries()}
    assert outcomes == {("nope", "invalid"), ("add", "ok"), ("unlock", "denied")}
    reopened.close()


def test_a_matching_phrase_is_answered_without_the_model(tmp_path):
    from agent.daemon.assembly import apply_skills
    from agent.config.settings import default_settings

    agent, llm = make_agent(["the model should not be asked"])
    apply_skills(agent, default_settings(), tmp_path)
    events = run(agent, "Convert 2 cups of flour to grams", explain=True)
    assert llm.requests == []
    assert "phrase path" in next(e for e in events if isinstance(e, Note)).text
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert finished.name == "convert_units" and finished.ok
    assert done(events).stopped_by == "done"


def test_a_near_miss_goes_to_the_model(tmp_path):
    from agent.daemon.assembly import apply_skills
    from agent.config.settings import default_settings

    agent, llm = make_agent(["A model answer."])
    apply_skills(agent, default_settings(), tmp_path)
    events = run(agent, "convert my grandmother's recipe to something vegan", explain=True)
    assert len(llm.requests) == 1 and done(events).text == "A model answer."
    assert next(e for e in events if isinstance(e, Note)).text.startswith("model:")
