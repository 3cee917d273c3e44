"""Constrained decoding cannot coerce: real MLX models trained to write hostile tool calls
(an unknown tool, a wrong type, a parameter that does not exist, a runaway string, one call
repeated) run through the real turn, with the grammar on and off. Nothing runs that the model
did not name, every such turn ends with a clear note, and no call markup reaches the reply."""

import asyncio
from dataclasses import replace

import pytest

from agent.events import Note, ReplyDone, TextDelta, ToolStarted
from agent.llm.call_watch import CallTrace
from agent.llm.constrained import CONFIDENCE_FLOOR
from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Finished, Request, Sampling
from agent.store import Store
from agent.tool_calls import checked_calls
from fixtures.hostile_model import CASES, hostile_agent, hostile_model, hostile_registry
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

pytestmark = pytest.mark.slow


class RecordingEngine(MLXEngine):
    """The real engine, keeping each model call's text and Finished for the test to read."""

    def generate_sync(self, request, cancel=None):
        text = []
        for item in super().generate_sync(request, cancel):
            if isinstance(item, Finished):
                self.calls.append(("".join(text), item))
            else:
                text.append(item.text)
            yield item


@pytest.fixture(scope="module")
def engine():
    engine = RecordingEngine(hostile_model())
    engine.calls = []
    yield engine
    engine.close()


def play(engine, text: str, *, constrained: bool, tmp_path):
    """One turn of the hostile model through the real Agent, with a real store."""
    agent = hostile_agent(engine)
    agent.constrained = constrained
    agent.store = Store(tmp_path / f"{constrained}.db")
    engine.calls = []

    async def collect():
        return [e async for e in agent.respond(text)]

    try:
        events = asyncio.run(collect())
        audit = list(reversed(agent.store.audit_entries(limit=100)))
    finally:
        agent.store.close()
    return events, audit, list(engine.calls)


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "unconstrained"])
@pytest.mark.parametrize("case", list(CASES))
def test_nothing_runs_that_the_model_did_not_name(engine, case, constrained, tmp_path):
    text = CASES[case][0]
    events, audit, calls = play(engine, text, constrained=constrained, tmp_path=tmp_path)
    ran = [e.name for e in events if isinstance(e, ToolStarted)]
    written = "".join(t for t, _ in calls)
    # Every tool that ran is one the model wrote out, and the grammar did not pick its name.
    assert all(f"<function={name}>" in written for name in ran), (ran, written)
    traces = [trace for _, finished in calls for trace in finished.call_traces]
    assert not any(trace.coerced for trace in traces)
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.stats.coerced_calls == 0
    assert {row.tool for row in audit if row.outcome != "invalid"} <= set(ran)
    if case in ("unknown tool", "wrong type", "wrong parameter") and not constrained:
        # The model never wrote a call that can run. (With the grammar on, an abandoned call
        # leaves a history the model never learned, so what it writes next is its own: it
        # may then write a real call, which runs only because it named it, checked above.)
        assert not ran
    assert [e for e in events if isinstance(e, Note)], "no note says what went wrong"
    shown = done.text + "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<tool_call>" not in shown and "<function=" not in shown and "Traceback" not in shown


@pytest.mark.parametrize("case", ["wrong type", "wrong parameter", "runaway string"])
def test_a_call_the_grammar_would_force_is_abandoned_with_a_clear_note(engine, case, tmp_path):
    events, audit, calls = play(engine, CASES[case][0], constrained=True, tmp_path=tmp_path)
    first_text, first = calls[0]
    assert first.finish_reason == "constraint", first_text
    (trace,) = first.call_traces
    assert trace.abandoned and trace.lowest_mass < CONFIDENCE_FLOOR
    assert audit[0].outcome == "invalid"
    notes = [e.text for e in events if isinstance(e, Note)]
    assert "fits no tool's schema" in notes[0]


def test_an_unknown_tool_is_answered_as_unknown_with_the_grammar_on(engine, tmp_path):
    events, audit, calls = play(engine, CASES["unknown tool"][0], constrained=True, tmp_path=tmp_path)
    # one row per attempt: the call and its correction, both to the unknown tool
    assert [(row.tool, row.outcome) for row in audit] == [("format_disk", "invalid")] * 2
    assert all(finished.finish_reason == "stop" for _, finished in calls)
    assert "There is no tool named 'format_disk'" in events[-1].text
    assert events[-1].stopped_by == "guard"


def test_the_floor_sits_between_meant_and_forced_steps(engine, tmp_path):
    """Meant steps keep nearly all the model's probability, overruled ones almost none: the
    floor has a margin of 10x on both sides (the figures are in llm/constrained.py)."""
    meant, overruled = [], []
    for case in CASES:
        _, _, calls = play(engine, CASES[case][0], constrained=True, tmp_path=tmp_path)
        for _, finished in calls:
            for trace in finished.call_traces:
                (overruled.append(trace.masses[-1]) if trace.abandoned else None)
                meant.extend(trace.masses[:-1] if trace.abandoned else trace.masses)
    assert meant and overruled
    assert min(meant) > 10 * CONFIDENCE_FLOOR
    assert max(overruled) < CONFIDENCE_FLOOR / 10


def test_a_random_model_is_not_forced_into_a_call(tiny_qwen_vocab):
    """A random-weight model means nothing: on the 248k vocabulary the grammar would write its
    whole call; with the floor, the call is abandoned at the first step the mask decides."""
    from agent.daemon.assembly import core_registry

    engine = MLXEngine(tiny_qwen_vocab, seed=0)
    try:
        tools = core_registry().schemas()
        random = Sampling(temperature=1.0, top_p=1.0, top_k=0, presence_penalty=0.0)
        messages = [{"role": "system", "content": "You are a test assistant."}, {"role": "user", "content": "hi"}]
        for floor in (CONFIDENCE_FLOOR, 0.0):
            guide = engine.guides().processor(tools, thinking=False, thinking_budget=None, constrained=True, require_call=True, floor=floor)
            items = engine.run_on_thread(lambda: list(engine.generate_sync(Request(messages, tools, False, 120, random, logits_processors=[guide]))))
            text = "".join(i.text for i in items if not isinstance(i, Finished))
            (trace,) = guide.traces
            if floor:
                assert trace.abandoned and len(trace.masses) <= 2, trace.masses
                assert [problem for _, problem in checked_calls(text, "constraint", engine.tool_format, core_registry())] != [None]
            else:
                assert not trace.abandoned and min(trace.masses) < CONFIDENCE_FLOOR  # forced
    finally:
        engine.close()


def test_the_guide_sees_a_name_it_overrode(engine):
    """With the names closed (require_call) and no floor, a model that means format_disk is
    made to write a real tool: the trace says the grammar chose the name."""
    from mlx_lm import stream_generate

    from agent.testkit.agent_model import recorded_examples

    text, outputs, _ = CASES["unknown tool"]
    prompt = recorded_examples(engine, [(text, outputs)], hostile_agent)[0][0]
    guide = engine.guides().processor(hostile_registry().schemas(), thinking=False, thinking_budget=None,
                                      constrained=True, require_call=True, floor=0.0)
    written = "".join(r.text for r in engine.run_on_thread(
        lambda: list(stream_generate(engine.model, engine.tokenizer, engine.encode(prompt), max_tokens=40, logits_processors=[guide]))))
    (trace,) = guide.traces
    assert "format_disk" not in written
    assert trace.name_overridden and trace.coerced


class TracedLLM(ScriptedLLM):
    """A scripted model whose Finished carries the traces given for each of its calls."""

    def __init__(self, outputs, traces):
        super().__init__(outputs)
        self.traces = list(traces)

    async def stream(self, request, cancel=None):
        traces = self.traces.pop(0)
        async for item in super().stream(request, cancel):
            yield replace(item, call_traces=traces) if isinstance(item, Finished) else item


def test_the_turn_counts_a_coerced_call_that_ran():
    """The turn's side of the record (the eval's "coerced" figure): a call whose trace says
    the grammar chose its name is counted when it runs, not when it is only written."""
    from agent.testkit.agent_model import make_agent, run_turn

    coerced = (CallTrace(name_overridden=True),)
    llm = TracedLLM([xml_call("get_current_time"), xml_call("format_disk"), "done"], [coerced, coerced, ()])
    events = run_turn(make_agent(llm), "What time is it?")
    assert [e.name for e in events if isinstance(e, ToolStarted)] == ["get_current_time"]
    assert events[-1].stats.coerced_calls == 1


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "unconstrained"])
def test_agentd_ask_on_a_hostile_model_runs_nothing_and_says_why(constrained, tmp_path):
    """The issue's end-to-end check: `agentd ask --local`, a model that invents format_disk
    for a pizza and a parameter set_timer does not have, the grammar on and off."""
    import json

    from daemon_proc import agentd
    from agent.testkit.agent_model import GREEDY_CONFIG
    from fixtures.hostile_model import core_hostile_model

    model = core_hostile_model()
    config = tmp_path / "config.yaml"
    config.write_text(GREEDY_CONFIG.replace("model:\n", f"model:\n  constrained: {str(constrained).lower()}\n", 1))
    for case in ("unknown tool", "wrong parameter"):
        done = agentd("ask", "--local", "--json", "--home", str(tmp_path / "home"), "--config", str(config),
                      "--model", str(model), CASES[case][0], timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert not [e for e in events if e["type"] in ("ToolStarted", "ToolFinished")]
        notes = [e["text"] for e in events if e["type"] == "Note"]
        assert notes and notes[-1].startswith("Stopped: the model's tool call was still invalid")
        if case == "unknown tool":
            assert "There is no tool named 'format_disk'" in notes[0]
        reply = events[-1]
        assert reply["type"] == "ReplyDone" and "<tool_call>" not in reply["text"] and "<function=" not in reply["text"]


@pytest.mark.parametrize("style, call", [
    ("xml", ["<tool", "_call>", "\n<func", "tion=set", "_timer", ">\n", "<parameter=duration>\n", "5m\n", "</parameter>\n</function>\n", "</tool_call>", " ok"]),
    ("json", ["<tool_call>", '{"na', 'me": "set_', 'timer", ', '"arguments": {}}', "</tool_", "call>", " ok"]),
])
def test_a_call_spelled_in_text_tags_is_followed_from_the_token_bytes(style, call):
    """Models whose tags are text (SmolLM2's) are followed by their bytes: in the call from the
    start tag to the end tag, naming the tool until the name closes."""
    from agent.llm.call_watch import CallWatch

    pieces = ["Sure. ", *call]
    watch = CallWatch(start="<tool_call>", end="</tool_call>", start_id=None, end_id=None, style=style,
                      token_bytes=lambda token: pieces[token].encode())
    seen = []
    for token in range(len(pieces)):
        watch.accept(token)
        seen.append((watch.in_call, watch.naming))
    named_until = next(i for i, piece in enumerate(pieces) if piece.startswith(("_timer", "timer")))
    assert seen[0] == (False, False) and seen[-1] == (False, False)
    assert all(in_call and naming for in_call, naming in seen[2:named_until]), seen
    assert seen[named_until + 1] == (True, False) and len(watch.traces) == 1


def test_the_floor_s_rough_exp_stays_within_3_percent():
    import mlx.core as mx

    from agent.llm.constrained import _rough_exp

    y = mx.linspace(-80.0, 0.0, 200_001)
    ratio = _rough_exp(y) / mx.exp(y)
    assert 0.97 < mx.min(ratio).item() and mx.max(ratio).item() < 1.03
    assert _rough_exp(mx.array([-1000.0])).item() < 1e-34  # far below: nothing, not garbage
