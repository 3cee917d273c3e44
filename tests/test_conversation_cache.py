"""The conversation cache on real tiny Qwen3.5 models (linear-attention and attention layers):
a call prefills only what is new since the conversation's last call, and greedy decoding gives
exactly the tokens of a cold prefill, across turns, tool calls, a cancelled reply and a
conversation switched away from and back."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from agent.events import ReplyDone, ToolFinished
from agent.llm.conversation_cache import cache_nbytes
from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Finished, Request, Sampling
from agent.testkit.agent_model import make_agent, trained_tool_model

pytestmark = pytest.mark.slow
GREEDY = Sampling(temperature=0.0, presence_penalty=0.0)
SYSTEM = {"role": "system", "content": "You are a test."}
BUDGET = 64 * 1024 * 1024


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
    engine.conversations.budget_bytes = 0
    cold, cold_figures = conversation_of(engine, None, TURNS)
    engine.conversations.budget_bytes = BUDGET
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
    engine.conversations.budget_bytes = 0
    cold_a, _ = conversation_of(engine, None, TURNS[:3], cancel_first=True)
    cold_b, _ = conversation_of(engine, None, ["something else"])
    engine.conversations.budget_bytes = BUDGET
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
    engine.conversations.budget_bytes = BUDGET
    engine.conversations.forget()
    conversation_of(engine, "d", TURNS[:1])
    edited = [SYSTEM, {"role": "user", "content": "a different first message"}, {"role": "assistant", "content": "x"},
              {"role": "user", "content": TURNS[1]}]
    hits = engine.conversations.stats.hits
    call(engine, edited, "d")  # its snapshot is not a head of this prompt: never assumed
    assert engine.conversations.stats.hits == hits


def arrays_bytes(cache: list) -> int:
    """Bytes of every MLX array a cache holds, found by walking its layers (not mlx-lm's nbytes)."""
    import mlx.core as mx

    def walk(value):
        if isinstance(value, mx.array):
            return value.nbytes
        if isinstance(value, (list, tuple)):
            return sum(walk(v) for v in value)
        return 0

    return sum(walk(v) for layer in cache for v in vars(layer).values())


def test_over_the_byte_budget_the_least_recent_conversation_is_evicted(engine):
    cache = engine.conversations
    cache.budget_bytes = 0
    cold_a, _ = conversation_of(engine, None, TURNS[:2])
    cold_b, _ = conversation_of(engine, None, ["something else", "and more"])
    cache.budget_bytes = BUDGET
    cache.forget()
    conversation_of(engine, "probe", TURNS[:1])
    # one conversation: its two snapshots (at the end of its message, after the reply), each the KV
    # buffers of the attention layer and the linear-attention layers' states
    one = cache.report()["bytes"]
    snapshots = [cache._snapshots[("probe", kind)].cache for kind in ("message", "reply")]
    assert one == sum(map(cache_nbytes, snapshots)) == sum(map(arrays_bytes, snapshots)) > 0

    cache.forget()
    cache.budget_bytes = one * 5 // 4  # room for one conversation, not two
    evicted = cache.stats.evicted
    a = [SYSTEM, {"role": "user", "content": TURNS[0]}]
    b = [SYSTEM, {"role": "user", "content": "something else"}]
    reply_a, first_a = call(engine, list(a), "a")
    reply_b, _ = call(engine, list(b), "b")  # over budget: a, the least recently used, goes
    assert cache.report()["conversations"] == 1 and cache.stats.evicted == evicted + 2  # its two snapshots
    assert cache.report()["bytes"] <= cache.budget_bytes
    hits = cache.stats.hits
    a += [{"role": "assistant", "content": reply_a}, {"role": "user", "content": TURNS[1]}]
    again_a, finished = call(engine, list(a), "a")  # back to a: from the prefix, the whole history read again
    assert cache.stats.hits == hits and finished.prefix_tokens_reused == first_a.prefix_tokens_reused  # the prefix
    b += [{"role": "assistant", "content": reply_b}, {"role": "user", "content": "and more"}]
    again_b, _ = call(engine, list(b), "b")  # b was evicted in turn
    assert cache.stats.evicted == evicted + 6 and cache.stats.hits == hits
    assert [reply_a, again_a] == cold_a and [reply_b, again_b] == cold_b  # the same tokens as a cold prefill

    cache.forget()
    cache.budget_bytes = one // 4  # not even one snapshot fits: none is kept, the prefix is the floor
    replies, figures = conversation_of(engine, "c", TURNS[:2])
    assert replies == cold_a and cache.report()["conversations"] == 0 and cache.report()["bytes"] == 0
    assert figures[1].prefix_hit and figures[1].prefix_tokens_reused == figures[0].prefix_tokens_reused  # the prefix
    cache.budget_bytes = BUDGET


class RecordingEngine(MLXEngine):
    """The real engine, keeping each call's messages so a test can render what it read."""

    def generate_sync(self, request, cancel=None):
        self.requests = [*getattr(self, "requests", []), request]
        return super().generate_sync(request, cancel)


def test_the_second_call_of_a_tool_turn_reads_only_the_tools_result():
    engine = RecordingEngine(trained_tool_model())
    try:
        agent = make_agent(engine)
        agent.limits = dataclasses.replace(agent.limits, history_messages=20)  # the follow-up sees the tool turn

        async def turn(conversation):
            return [e async for e in agent.respond("What is 12 times 7?", conversation_id=conversation)]

        async def follow_up(conversation):
            return [e async for e in agent.respond("Thanks!", conversation_id=conversation)]

        engine.conversations.budget_bytes = 0
        cold = asyncio.run(turn("cold"))
        engine.conversations.budget_bytes = BUDGET
        engine.requests = []
        events = asyncio.run(turn("turn-1"))
        first, second = (engine.encode(engine.render(r.messages, r.tools, thinking=False)) for r in engine.requests)
        engine.conversations.budget_bytes = 0
        cold_next = asyncio.run(follow_up("cold"))
        engine.conversations.budget_bytes = BUDGET
        engine.requests = []
        warm_next = asyncio.run(follow_up("turn-1"))
        third = engine.encode(engine.render(engine.requests[0].messages, engine.requests[0].tools, thinking=False))
        turn_start = engine.encode("<|im_start|>")[0]
        decode = engine.tokenizer.decode
    finally:
        engine.close()
    assert [e.result for e in events if isinstance(e, ToolFinished)] == ["12*7 = 84"]
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.text == "12 times 7 is 84." == cold[-1].text  # as without the cache
    stats = done.stats
    assert stats.model_calls == 2 and len(stats.per_call) == 2
    (prefilled_1, reused_1), (prefilled_2, reused_2) = stats.per_call
    assert prefilled_1 + reused_1 == len(first) and prefilled_2 + reused_2 == len(second)
    # the second call reuses the first one's prompt and the tool call the model wrote after it...
    assert second[: len(first)] == first and reused_2 > len(first), stats.per_call
    assert decode(second[len(first) : reused_2]).startswith("<tool_call>\n<function=calculate>")
    # ...and reads only the tool's result in the template's tokens around it
    assert decode(second[reused_2:]) == ("\n<|im_start|>user\n<tool_response>\n12*7 = 84\n</tool_response><|im_end|>\n"
                                         "<|im_start|>assistant\n<think>\n\n</think>\n\n"), stats.per_call
    assert stats.prompt_tokens - stats.prefix_tokens_reused == prefilled_1 + prefilled_2
    assert stats.prefill_line() == f"prefilled {prefilled_1}+{prefilled_2} tokens, reused {reused_1}+{reused_2}"

    # The next message: the template now renders the tool turn without its think block, so the
    # cache resumes where the tool turn's user message ended (kept through the tool round as
    # "turn"), not from the prefix: the history before the tool turn is not read again.
    assert warm_next[-1].text == cold_next[-1].text  # as without the cache
    boundary = len(first) - 1 - first[::-1].index(turn_start)  # the end of "What is 12 times 7?"
    (prefilled_3, reused_3) = warm_next[-1].stats.per_call[0]
    assert reused_3 == boundary and prefilled_3 == len(third) - boundary, warm_next[-1].stats.per_call
    assert third[:boundary] == first[:boundary] and decode(third[boundary:]).startswith("<|im_start|>assistant\n<tool_call>")
