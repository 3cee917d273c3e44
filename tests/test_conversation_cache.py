"""The conversation cache on real tiny Qwen3.5 models (linear-attention and attention layers):
a call prefills only what is new since the conversation's last call, and greedy decoding gives
exactly the tokens of a cold prefill, across turns, tool calls, a cancelled reply and a
conversation switched away from and back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.events import ReplyDone, ToolFinished
from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Finished, Request, Sampling
from agent.testkit.agent_model import make_agent, trained_tool_model

pytestmark = pytest.mark.slow
GREEDY = Sampling(temperature=0.0, presence_penalty=0.0)
SYSTEM = {"role": "system", "content": "You are a test."}


@pytest.fixture(scope="module")
def engine(tiny_qwen_bpe):
    engine = MLXEngine(tiny_qwen_bpe)
    yield engine
    engine.close()


def call(engine, messages, conversation, *, cancel_after: int | None = None) -> tuple[str, Finished]:
    """One greedy model call on the MLX thread: (text, figures)."""
    cancel = threading.Event()
    request = Request(messages=messages, tools=[], thinking=False, max_tokens=12, sampling=GREEDY, conversation=conversation)

    def run():
        text, chunks = [], 0
        for item in engine.generate_sync(request, cancel):
            if isinstance(item, Chunk):
                text.append(item.text)
                chunks += 1
                if cancel_after is not None and chunks >= cancel_after:
                    cancel.set()
            else:
                return "".join(text), item

    return engine._executor.submit(run).result()


def conversation_of(engine, conversation, turns, *, cancel_first=False):
    """Play user turns in one conversation, each reply joining the history; (replies, figures)."""
    messages, replies, figures = [SYSTEM], [], []
    for i, text in enumerate(turns):
        messages.append({"role": "user", "content": text})
        reply, finished = call(engine, list(messages), conversation, cancel_after=2 if cancel_first and i == 0 else None)
        messages.append({"role": "assistant", "content": reply})
        replies.append(reply)
        figures.append(finished)
    return replies, figures


TURNS = ["hello there", "what is next", "and then?", "tell me more", "one last thing"]


def test_the_same_tokens_as_a_cold_prefill_and_only_new_tokens_prefilled(engine):
    engine.conversations.forget()
    engine.conversations.keep = 0
    cold, cold_figures = conversation_of(engine, None, TURNS)
    engine.conversations.keep = 4
    warm, warm_figures = conversation_of(engine, "c1", TURNS)
    assert warm == cold  # exactly the same replies, turn after turn
    for before, after in zip(warm_figures, warm_figures[1:]):
        # everything the previous call read up to its generation prompt is reused; then only the
        # reply as the template renders it and the new message are read
        assert before.prompt_tokens - 16 < after.prefix_tokens_reused < before.prompt_tokens
        assert after.prompt_tokens - after.prefix_tokens_reused < 40
    assert cold_figures[-1].prompt_tokens - cold_figures[-1].prefix_tokens_reused > 100  # without it: the history again
    assert engine.conversations.report()["hits"] == len(TURNS) - 1


def test_a_cancelled_reply_and_a_switch_between_conversations(engine):
    engine.conversations.keep = 0
    cold_a, _ = conversation_of(engine, None, TURNS[:3], cancel_first=True)
    cold_b, _ = conversation_of(engine, None, ["something else"])
    engine.conversations.keep = 4
    engine.conversations.forget()
    messages = [SYSTEM, {"role": "user", "content": TURNS[0]}]
    first, _ = call(engine, list(messages), "a", cancel_after=2)  # stopped mid-reply
    assert first == cold_a[0]
    other, _ = conversation_of(engine, "b", ["something else"])  # another conversation meanwhile
    assert other == cold_b
    replies = [first]
    for text in TURNS[1:3]:  # back to the first one, its cut-short reply in the history
        messages += [{"role": "assistant", "content": replies[-1]}, {"role": "user", "content": text}]
        reply, finished = call(engine, list(messages), "a")
        assert finished.prefix_hit and finished.prefix_tokens_reused > 0
        replies.append(reply)
    assert replies == cold_a


def test_a_history_rendered_differently_falls_back_to_the_prefix(engine):
    engine.conversations.keep = 4
    engine.conversations.forget()
    conversation_of(engine, "d", TURNS[:1])
    edited = [SYSTEM, {"role": "user", "content": "a different first message"}, {"role": "assistant", "content": "x"},
              {"role": "user", "content": TURNS[1]}]
    hits = engine.conversations.stats.hits
    call(engine, edited, "d")  # its snapshot is not a head of this prompt: never assumed
    assert engine.conversations.stats.hits == hits


def test_the_second_call_of_a_tool_turn_reads_only_the_tools_result():
    engine = MLXEngine(trained_tool_model())
    try:
        agent = make_agent(engine)

        async def turn():
            return [e async for e in agent.respond("What is 12 times 7?", conversation_id="turn-1")]

        events = asyncio.run(turn())
    finally:
        engine.close()
    assert [e.result for e in events if isinstance(e, ToolFinished)] == ["12*7 = 84"]
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.text == "12 times 7 is 84."  # the trained reply, unchanged
    stats = done.stats
    # two calls: the second reuses all of the first prompt; prefilled in all = first prompt + the new part
    assert stats.model_calls == 2 and stats.prompt_tokens - stats.prefix_tokens_reused < stats.prompt_tokens // 2 + 40
