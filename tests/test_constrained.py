"""Constrained tool calls on real MLX: a random-weight Qwen3.5 with the real 248k vocabulary
writes only calls that mlx-lm's parser reads and the tools' schemas accept; unconstrained, the
same model writes garbage. Also the thinking budget, the grammar cache, and the errors."""

import sys
from typing import Literal

import pytest

from agent.llm.constrained import ConstraintError, Guides
from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Finished, Request, Sampling
from agent.tool_calls import checked_calls
from agent.tools import ToolRegistry, build_tool

SAMPLES = 10
RANDOM = Sampling(temperature=1.0, top_p=1.0, top_k=0, presence_penalty=0.0)


def set_light(room: Literal["kitchen", "bedroom", "hall"], level: int, on: bool = True, scene: str = "") -> str:
    """Set a room's light.

    Args:
        room: The room.
        level: Brightness in percent.
        on: True to switch it on.
        scene: A named scene, if the user gave one.
    """
    return "ok"


def get_weather(place: str, days: int = 1, units: Literal["metric", "imperial"] = "metric") -> str:
    """The forecast.

    Args:
        place: A city.
        days: Days ahead.
        units: Unit system.
    """
    return "sunny"


def stop_music() -> str:
    """Stop the music."""
    return "stopped"


REGISTRY = ToolRegistry([build_tool(set_light), build_tool(get_weather), build_tool(stop_music)])
TOOLS = REGISTRY.schemas()


@pytest.fixture(scope="module")
def engine(tiny_qwen_vocab):
    engine = MLXEngine(tiny_qwen_vocab, seed=0)
    engine.run_on_thread(lambda: engine.guides().ll_tokenizer())
    yield engine
    engine.close()


def messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "You are a test assistant."}, {"role": "user", "content": f"request {i}"}]


def generate(engine, req: Request) -> tuple[str, Finished]:
    items = engine.run_on_thread(lambda: list(engine.generate_sync(req)))
    return "".join(i.text for i in items if isinstance(i, Chunk)), items[-1]


def calls_in(engine, text: str, finish: str) -> list:
    return checked_calls(text, finish, engine.tool_format, REGISTRY)


def forced(engine, tools=TOOLS):
    """A guide that forces one call whatever the model means (no floor), as a benchmark of the
    grammar does: a random-weight model means nothing, so every call it writes is forced."""
    return engine.guides().processor(tools, thinking=False, thinking_budget=None, constrained=True, require_call=True, floor=0.0)


def test_constrained_calls_always_parse_and_fit_the_schemas(engine):
    valid = 0
    for i in range(SAMPLES):
        guide = forced(engine)
        text, finished = generate(engine, Request(messages(i), TOOLS, False, 200, RANDOM, logits_processors=[guide]))
        checked = calls_in(engine, text, finished.finish_reason)
        assert checked, text
        for call, problem in checked:
            assert problem is None, (problem, text)
            assert call.name in REGISTRY.names()
        valid += finished.finish_reason == "stop"
    assert valid == SAMPLES


def test_unconstrained_the_same_model_writes_invalid_calls(engine):
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    invalid = 0
    for i in range(SAMPLES):
        # Start it inside a tool call, as the constrained run is made to be.
        prompt = engine.render(messages(i), TOOLS, thinking=False) + "<tool_call>\n"
        text = "".join(r.text for r in engine.run_on_thread(
            lambda: list(stream_generate(engine.model, engine.tokenizer, engine.encode(prompt), max_tokens=40, sampler=make_sampler(temp=1.0)))))
        checked = calls_in(engine, "<tool_call>\n" + text, "length")
        invalid += any(problem for _, problem in checked)
    assert invalid == SAMPLES


def test_free_text_stays_possible_and_cannot_spell_the_tag(engine):
    text, finished = generate(engine, Request(messages(0), TOOLS, False, 24, RANDOM, constrained=True))
    assert text.strip() and "<tool_call>" not in text
    guides = engine.guides()
    matcher = guides.matcher(TOOLS, thinking=False)
    spelled = [engine.encode(piece)[0] for piece in ("Hi", " <", "tool", "_call", ">")]
    assert matcher.validate_tokens(spelled) == len(spelled) - 1  # the ">" that would close it
    assert matcher.consume_token(guides.tag_tokens["<tool_call>"])  # the real token opens a call


def test_no_tools_means_text_only(engine):
    text, _ = generate(engine, Request(messages(1), [], False, 16, RANDOM, constrained=True))
    assert text.strip() and "<tool_call>" not in text


@pytest.mark.parametrize("constrained", [False, True])
def test_thinking_budget_closes_thinking(engine, constrained):
    req = Request(messages(2), TOOLS, True, 20, RANDOM, constrained=constrained, thinking_budget=5)
    ids = engine.run_on_thread(lambda: [t for t in _token_ids(engine, req)])
    think_end = engine.guides().tag_tokens["</think>"]
    assert ids[5] == think_end, ids[:8]


def _token_ids(engine, req):
    """The token ids the engine samples, read through a pass-through processor."""
    seen = []

    def record(tokens, logits):
        seen.append(tokens)
        return logits

    req.logits_processors = [*req.logits_processors, record]
    list(engine.generate_sync(req))
    return [int(t[-1].item()) for t in seen[1:]]


def test_off_means_no_processor(engine):
    guides = engine.guides()
    assert guides.processor(TOOLS, thinking=False, thinking_budget=None, constrained=False) is None
    assert guides.processor(TOOLS, thinking=False, thinking_budget=50, constrained=False) is None  # no thinking, no budget
    assert guides.processor(TOOLS, thinking=True, thinking_budget=50, constrained=False).matcher is None


def test_settings_reach_the_request():
    from agent.daemon.assembly import configure
    from agent.config.settings import load_settings
    from agent.turn import Agent

    agent = Agent(llm=None, registry=REGISTRY, system_prompt="x")
    configure(agent, load_settings())
    assert agent.constrained is True and agent.thinking_budget is None
    configure(agent, load_settings(overrides={"model.constrained": False, "model.thinking_budget": 256}))
    assert agent.constrained is False and agent.thinking_budget == 256


def test_grammar_is_compiled_once_per_tool_set(engine):
    guides = engine.guides()
    guides.matcher(TOOLS, thinking=False)
    compiles = guides.compiles
    guides.matcher(TOOLS, thinking=False)
    assert guides.compiles == compiles
    guides.matcher(TOOLS[:2], thinking=False)  # a reload changed the tools
    assert guides.compiles == compiles + 1


def test_warm_up_compiles_the_grammar_ahead_of_the_first_call(engine):
    guides = engine.guides()
    guides.clear()
    before = guides.compiles
    engine.warm_up("You are a test assistant.", TOOLS, constrained=True)
    engine.run_on_thread(lambda: None)  # the warm-up runs on the MLX thread
    assert guides.compiles == before + 1
    guides.matcher(TOOLS, thinking=False)
    assert guides.compiles == before + 1


def test_json_style_calls_parse_with_the_json_parser(engine):
    import json

    guides = Guides(engine.tokenizer, style="json", tags=engine.tool_format.tags, vocab_width=engine.guides().vocab_width)
    guides._ll = engine.guides().ll_tokenizer()  # same vocabulary: skip the seconds of set-up
    for i in range(3):
        guide = guides.processor(TOOLS, thinking=False, thinking_budget=None, constrained=True, require_call=True, floor=0.0)
        text, finished = generate(engine, Request(messages(i), TOOLS, False, 160, RANDOM, logits_processors=[guide]))
        assert finished.finish_reason == "stop", text
        body = text.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
        call = json.loads(body)
        tool = REGISTRY.get(call["name"])
        tool.validate(call["arguments"])


def test_a_schema_that_cannot_compile_names_the_tool(engine):
    broken = {"type": "function", "function": {"name": "broken_tool", "parameters": {
        "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/missing"}}}, "required": ["items"]}}}
    with pytest.raises(ConstraintError, match="broken_tool"):
        engine.guides().matcher([*TOOLS, broken], thinking=False)


def test_missing_llguidance_is_a_clear_error(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "llguidance", None)
    guides = Guides(engine.tokenizer, style="xml", tags=engine.tool_format.tags, vocab_width=100)
    with pytest.raises(ConstraintError, match="pip install 'llguidance"):
        guides.matcher(TOOLS, thinking=False)


@pytest.mark.slow
def test_the_trained_model_keeps_its_calls_and_an_invented_tool_stays_unknown():
    from agent.events import Note, ReplyDone, ToolStarted
    from agent.testkit.agent_model import make_agent, run_turn, trained_tool_model

    engine = MLXEngine(trained_tool_model())
    try:
        agent = make_agent(engine)
        agent.constrained = True
        events = run_turn(agent, "What is 12 times 7?")
        assert [(e.name, e.arguments) for e in events if isinstance(e, ToolStarted)] == [("calculate", {"expression": "12*7"})]
        assert isinstance(events[-1], ReplyDone) and events[-1].text == "12 times 7 is 84."
        # The grammar lets the model write the tool it invented, so the turn answers it as
        # unconstrained decoding does (test_agent_e2e): nothing runs, one correction.
        events = run_turn(agent, "Launch the rocket.")
        assert not [e for e in events if isinstance(e, ToolStarted)]
        assert any(isinstance(e, Note) and "launch_rocket" in e.text for e in events)
        assert events[-1].text == "I have no tool for that." and events[-1].stats.coerced_calls == 0
    finally:
        engine.close()


def test_any_name_can_be_written_and_a_registered_one_constrains_its_arguments(engine):
    """A registered name that is a prefix of another name stays writable both ways (the
    greedy lexer must not commit to the registered one), in both tool-call styles."""
    prefixed = {"type": "function", "function": {"name": "set_light_now", "parameters": {"type": "object", "properties": {}}}}
    tools = [*TOOLS, prefixed]
    registry = ToolRegistry([build_tool(set_light), build_tool(get_weather), build_tool(stop_music)])
    xml = lambda name, body: f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"
    json_call = lambda name, args: f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'
    cases = {
        "xml": [(xml("set_light", "<parameter=room>\nhall\n</parameter>\n<parameter=level>\n5\n</parameter>\n"), True),
                (xml("set_light_now", ""), True), (xml("set_lights", "<parameter=room>\nhall\n</parameter>\n"), True),
                (xml("format_disk", "<parameter=path>\n/dev/sda\n</parameter>\n"), True),
                (xml("set_light", "<parameter=room>\nhall\n</parameter>\n<parameter=level>\nfive\n</parameter>\n"), False),
                (xml("set_light", "<parameter=colour>\nred\n</parameter>\n"), False)],
        "json": [(json_call("set_light", '{"room": "hall", "level": 5}'), True), (json_call("set_light_now", "{}"), True),
                 (json_call("format_disk", '{"path": "/dev/sda"}'), True), (json_call("set_light", '{"room": "hall", "level": "5"}'), False)],
    }
    for style, texts in cases.items():
        guides = Guides(engine.tokenizer, style=style, tags=engine.tool_format.tags, vocab_width=engine.guides().vocab_width)
        guides._ll = engine.guides().ll_tokenizer()
        for text, writable in texts:
            ids = engine.encode(text)
            assert (guides.matcher(tools, thinking=False).validate_tokens(ids) == len(ids)) == writable, (style, text)
    (call, problem), = checked_calls(cases["xml"][3][0], "stop", engine.tool_format, registry)
    assert call.name == "format_disk" and problem.startswith("There is no tool named 'format_disk'")


def test_an_unknown_tool_call_format_says_how_to_go_on():
    from agent.llm.grammar import style_for

    assert style_for("mlx_lm.tool_parsers.qwen3_coder") == "xml" and style_for("mlx_lm.tool_parsers.json_tools") == "json"
    with pytest.raises(ValueError, match="not constrained"):
        style_for("mlx_lm.tool_parsers.mistral")
