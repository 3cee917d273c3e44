"""End to end through real MLX generation: a tiny Qwen3.5 trained (in the test set-up) to
emit real tool calls for a few prompts runs through the same Agent, engine and tools as users
(see fixtures/agent_model.py for how it is trained).
"""

import pytest

from agent.events import Note, ReplyDone, TextDelta, ToolFinished, ToolStarted
from agent.llm.mlx_engine import MLXEngine
from agent.testkit.agent_model import make_agent, run_turn, trained_tool_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent():
    engine = MLXEngine(trained_tool_model())
    yield make_agent(engine)
    engine.close()


def test_the_model_calls_a_tool_and_answers_with_its_result(agent):
    events = run_turn(agent, "What is 12 times 7?")
    started = [e for e in events if isinstance(e, ToolStarted)]
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [(e.name, e.arguments) for e in started] == [("calculate", {"expression": "12*7"})]
    assert finished[0].ok and finished[0].result == "12*7 = 84"
    reply = events[-1]
    assert isinstance(reply, ReplyDone) and reply.text == "12 times 7 is 84."
    assert reply.stats.model_calls == 2
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<tool_call>" not in streamed and streamed == "12 times 7 is 84."


def test_tool_with_no_arguments_uses_the_clock(agent):
    events = run_turn(agent, "What time is it?")
    result = next(e for e in events if isinstance(e, ToolFinished)).result
    assert "09:30" in result and "March 2026" in result
    assert events[-1].text == "It is half past nine."


def test_plain_chat_calls_no_tool(agent):
    events = run_turn(agent, "Hello!")
    assert not any(isinstance(e, ToolStarted) for e in events)
    assert events[-1].text == "Hello! How can I help?"


def test_unknown_tool_from_a_real_model_runs_nothing_and_is_corrected(agent):
    events = run_turn(agent, "Launch the rocket.")
    assert not any(isinstance(e, ToolStarted) for e in events)
    assert any(isinstance(e, Note) and "launch_rocket" in e.text for e in events)
    assert events[-1].text == "I have no tool for that." and events[-1].stopped_by == "done"


def test_a_failing_call_is_retried_by_the_model(agent):
    events = run_turn(agent, "Add 2 and two.")
    results = [e for e in events if isinstance(e, ToolFinished)]
    assert [r.ok for r in results] == [False, True]
    assert events[-1].text == "2 and 2 make 4."


def test_the_prefix_cache_is_hit_from_the_second_turn(agent):
    run_turn(agent, "Hello!")
    events = run_turn(agent, "Hello!")
    assert events[-1].stats.prefix_hit and events[-1].stats.prefix_tokens_reused > 100


def test_a_tool_call_cut_off_at_max_tokens_runs_nothing(agent):
    from dataclasses import replace

    limits = agent.limits
    agent.limits = replace(limits, max_tokens=6)
    try:
        events = run_turn(agent, "What is 12 times 7?")
    finally:
        agent.limits = limits
    notes = [e.text for e in events if isinstance(e, Note)]
    assert not any(isinstance(e, ToolStarted) for e in events)
    assert "cut off at max_tokens" in notes[0]  # the half-written call: an error, not a run
    assert "reply was cut off" in notes[-1]  # the model's next try is cut too, and said so
