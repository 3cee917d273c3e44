"""A conversation longer than the model's context: trimmed oldest first (never the system
prompt or the person's message), the turn still answers, and the person sees one short note."""

import asyncio

import pytest

from agent.daemon.assembly import core_registry
from agent.context import TRIMMED, fit
from agent.events import Note, ReplyDone, ToolFinished
from agent.llm.mlx_engine import MLXEngine
from agent.config.settings import load_settings
from agent.store import Store
from agent.tools import ToolRegistry, tool
from agent.turn import Agent, TurnLimits
from agent.testkit.agent_model import GREEDY
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

SYSTEM = "You are a home agent."


def settings(window: int, max_tokens: int):
    return load_settings(overrides={"model": {"context_window": window, "max_tokens": max_tokens}})


def respond(agent, text, conversation_id=None):
    async def go():
        return [e async for e in agent.respond(text, conversation_id=conversation_id)]

    return asyncio.run(go())


@pytest.fixture(scope="module")
def engine(tiny_qwen_bpe):
    engine = MLXEngine(tiny_qwen_bpe)
    yield engine
    engine.close()


def test_a_long_history_is_trimmed_oldest_first_on_a_real_model(engine, tmp_path):
    window, max_tokens = 400, 8
    with Store.open_in(tmp_path) as store:
        cid = store.new_conversation()
        for n in range(12):  # far more than 400 tokens of earlier exchanges
            store.add_messages(cid, [{"role": "user", "content": f"question {n}: " + "tell me about the garden " * 8},
                                     {"role": "assistant", "content": f"answer {n}: " + "the roses need water " * 8}])
        agent = Agent(llm=engine, registry=ToolRegistry(), system_prompt=SYSTEM, store=store,
                      settings=settings(window, max_tokens), sampling=GREEDY,
                      limits=TurnLimits(max_tokens=max_tokens, history_messages=40))
        events = respond(agent, "What about the lawn?", cid)
        done = events[-1]
        assert isinstance(done, ReplyDone) and done.stopped_by == "done"  # it still answers
        [note] = [e.text for e in events if isinstance(e, Note) and "context" in e.text]
        assert note.startswith("The conversation is longer than the model's context (400 tokens): the oldest ")
        assert 0 < done.stats.prompt_tokens <= window - max_tokens
        assert len(store.messages(cid)) == 26  # trimming is for the prompt; the history is all kept


class CountingLLM(ScriptedLLM):
    """A scripted model that counts tokens as words, so the trimming's arithmetic is plain."""

    path = None

    def render(self, messages, tools, *, thinking):
        return " ".join(f"<{m['role']}> {m.get('content') or ''}" for m in messages)

    def encode(self, text):
        return text.split()


@tool
def read_logbook(page: int) -> str:
    """A page of the house's logbook (long).

    Args:
        page: which page.
    """
    return f"page {page}: " + "boiler ok " * 300


def test_tool_results_that_outgrow_the_window_are_shortened_oldest_first():
    registry = ToolRegistry()
    registry.add(read_logbook)
    llm = CountingLLM([xml_call("read_logbook", page=1), xml_call("read_logbook", page=2),
                       xml_call("read_logbook", page=3), "All fine."])
    agent = Agent(llm=llm, registry=registry, system_prompt=SYSTEM, settings=settings(1000, 50),
                  limits=TurnLimits(max_tokens=50, history_messages=0, tool_output_max_chars=4000))
    events = respond(agent, "Is the boiler ok?")
    assert events[-1].text == "All fine." and len([e for e in events if isinstance(e, ToolFinished)]) == 3
    last = llm.requests[-1].messages
    assert last[0] == {"role": "system", "content": SYSTEM} and last[1]["content"] == "Is the boiler ok?"
    tools = [m["content"] for m in last if m["role"] == "tool"]
    assert tools[0] == TRIMMED.format(n=len(read_logbook(1))) and tools[1] == tools[0]
    assert tools[2].startswith("page 3: boiler ok")  # the newest result is still whole
    notes = [e.text for e in events if isinstance(e, Note)]
    assert notes == ["The conversation is longer than the model's context (1000 tokens): 1 tool result shortened.",
                     "The conversation is longer than the model's context (1000 tokens): 2 tool results shortened."]


def test_fit_never_drops_the_system_prompt_or_the_current_message():
    messages = [{"role": "system", "content": "s " * 50},
                {"role": "user", "content": "old " * 40}, {"role": "assistant", "content": "reply " * 40},
                {"role": "user", "content": "now " * 30}]
    fitted = fit(messages, count=lambda ms: sum(len((m["content"] or "").split()) for m in ms), budget=60)
    assert fitted.messages == [messages[0], messages[3]] and fitted.dropped == 2
    assert fitted.tokens == 80  # still over: nothing else may go, and the turn goes on regardless
