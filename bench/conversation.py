"""A 10-turn conversation with tool calls, the conversation cache on and off side by side in
one run: tokens prefilled per model call next to the tokens that are new to it, time to first
token at turn 10 vs turn 1, and the second call of each tool turn; and a tool turn ("What is
12 times 7?") through the agent on a model that calls tools by itself (`--model`, else the
tests' trained tool model).

Turns 2, 5 and 8 are tool turns: the model's first call writes a Qwen3.5 tool call, the tool's
result joins the history the way agent/turn.py adds it, and a second call answers. A model
with random weights cannot write a tool call, so the call is scripted: a logits processor
forces the tokens the chat template renders for it, so the cache holds what a real model's
call would leave there.

"New tokens" of a call are those after its longest common prefix with the last call's prompt
plus what that call generated: the least any cache could prefill. Qwen3.5's template renders a
past turn without its think blocks, so the last turn's replies (after a tool turn: its tool
call, the result and the answer) are new again to the next message; the cache resumes at a
message boundary, a few tokens (the turn's header) before that.

Time to first token compares turn 10 with turn 1, two ordinary messages; turn 9, the first
after a tool turn, reads that turn again and is printed on its own.
"""

from __future__ import annotations

import json
import statistics
import threading
from dataclasses import dataclass

from bench.common import model_arg_parser, resolve_model, show, synthetic_tool_schemas, tool_calling_agent

# (the user's words, the tool call a model would make: (tool, arguments, the tool's result) or None)
TURNS = [
    ("What is on the shopping list?", None),
    ("Dim the bedroom lamp to thirty percent.",
     ("home_action_2", {"device": "bedroom lamp", "level": 30, "room": "bedroom"}, {"device": "bedroom lamp", "level": 30})),
    ("Set a timer for ten minutes.", None),
    ("What time is it in Tokyo?", None),
    ("Is the front door locked?",
     ("home_action_5", {"device": "front door lock"}, {"device": "front door lock", "state": "locked"})),
    ("Remind me to call mum at six.", None),
    ("How warm is it in the living room?", None),
    ("Turn on the kitchen lights.",
     ("home_action_0", {"device": "kitchen lights", "level": 100, "room": "kitchen"}, {"device": "kitchen lights", "state": "on"})),
    ("Add eggs and milk to the shopping list.", None),
    ("Thanks, that is all for now.", None),
]


@dataclass
class Call:
    turn: int  # 1-based
    after_tool: bool  # the second call of a tool turn
    ttft_s: float
    prefilled: int  # prompt tokens not taken from a cache
    new: int  # prompt tokens after the common prefix with the last call's prompt + generation
    reply: str


class ForceTokens:
    """A logits processor that makes the model write exactly `tokens` (a scripted tool call)."""

    def __init__(self, tokens: list[int]):
        self.tokens, self.at = tokens, 0

    def __call__(self, _seen, logits):
        import mlx.core as mx

        target = self.tokens[min(self.at, len(self.tokens) - 1)]
        self.at += 1
        return mx.where(mx.arange(logits.shape[-1]) == target, logits, -mx.inf)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _tool_call_tokens(engine, messages: list[dict], tools: list[dict], assistant: dict) -> list[int]:
    """The tokens a model writes for `assistant` (a tool call) after this prompt, up to and with
    the end of its turn: the template's rendering of it, so the next call's prompt continues them."""
    prompt = engine.render(messages, tools, thinking=False)
    written = engine.render([*messages, assistant], tools, thinking=False, generation_prompt=False)
    if not written.startswith(prompt):
        raise RuntimeError(f"the chat template of {engine.name} does not continue the prompt with the tool call")
    end = engine.tokenizer.eos_token  # the end of the turn, which stops the generation
    text = written[len(prompt):]
    return engine.encode(text[: text.index(end) + len(end)])


def conversation(engine, tools: list[dict], system: str, key: str | None, reply_tokens: int) -> list[Call]:
    """Every model call of the conversation, the replies and scripted tool calls joining the history."""
    from agent.llm.types import Finished, Request, Sampling

    messages: list[dict] = [{"role": "system", "content": system}]
    calls: list[Call] = []
    last_seen: list[int] = []  # the last call's prompt + the tokens it was made to write

    def model_call(turn: int, after_tool: bool, forced: list[int] | None = None) -> None:
        nonlocal last_seen
        tokens = engine.encode(engine.render(messages, tools, thinking=False))
        request = Request(messages=list(messages), tools=tools, thinking=False, max_tokens=len(forced) if forced else reply_tokens,
                          sampling=Sampling(temperature=0.0, presence_penalty=0.0), conversation=key,
                          logits_processors=[ForceTokens(forced)] if forced else [])

        def once():
            chunks = []
            for item in engine.generate_sync(request, threading.Event()):
                if isinstance(item, Finished):
                    return "".join(chunks), item
                chunks.append(item.text)

        reply, finished = engine.run_on_thread(once)
        calls.append(Call(turn, after_tool, finished.time_to_first_token_s, finished.prompt_tokens - finished.prefix_tokens_reused,
                          len(tokens) - _common_prefix(tokens, last_seen) if last_seen else len(tokens), reply))
        last_seen = tokens + (forced or [])
        if not forced:
            messages.append({"role": "assistant", "content": reply})

    for turn, (text, scripted) in enumerate(TURNS, start=1):
        messages.append({"role": "user", "content": text})
        if scripted is None:
            model_call(turn, False)
            continue
        name, arguments, result = scripted
        call_id = f"call-{turn}"
        assistant = {"role": "assistant", "content": "",
                     "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}
        model_call(turn, False, _tool_call_tokens(engine, messages, tools, assistant))
        messages += [assistant, {"role": "tool", "content": json.dumps(result), "name": name, "tool_call_id": call_id}]
        model_call(turn, True)
    return calls


def agent_tool_turn(model: str | None) -> dict:
    """(prefilled, reused) tokens of each model call of one tool turn through the agent, on a model
    that writes the call itself, with the cache and without."""
    import asyncio

    agent, engine, name = tool_calling_agent(model)
    budget = engine.conversations.budget_bytes

    def turn(conversation: str) -> tuple:
        async def play():
            return [e async for e in agent.respond("What is 12 times 7?", conversation_id=conversation)]

        return asyncio.run(play())[-1].stats.per_call

    try:
        turn("warm")  # reads the system prompt and tools into the prefix cache
        engine.conversations.budget_bytes = 0
        off = turn("off")
        engine.conversations.budget_bytes = budget
        on = turn("on")
    finally:
        engine.close()
    return {"agent_tool_turn_model": name, "agent_tool_turn_per_call_on": on, "agent_tool_turn_per_call_off": off}


def _median_calls(runs: list[list[Call]]) -> list[Call]:
    """Per call: the first run's figures with the median time to first token over the runs
    (the tokens are the same in every run)."""
    return [Call(c[0].turn, c[0].after_tool, statistics.median(x.ttft_s for x in c), c[0].prefilled, c[0].new, c[0].reply)
            for c in zip(*runs)]


def _first_of_turn(calls: list[Call], turn: int) -> Call:
    return next(c for c in calls if c.turn == turn and not c.after_tool)


def run(model_path, *, tool_count: int = 12, reply_tokens: int = 16, tool_model: str | None = None,
        repeats: int = 3, agent_turn: bool = True) -> dict:
    from agent.config.settings import load_settings
    from agent.llm.mlx_engine import MLXEngine

    engine = MLXEngine(model_path)
    system, tools = load_settings().agent.system_prompt, synthetic_tool_schemas(tool_count)
    conversation(engine, tools, system, None, 2)  # build the prefix, warm the kernels
    runs_off, runs_on = [], []
    for i in range(repeats):  # interleaved, so drift on a busy machine hits both alike
        runs_off.append(conversation(engine, tools, system, None, reply_tokens))
        runs_on.append(conversation(engine, tools, system, f"bench-{i}", reply_tokens))
    header = len(engine.encode(engine.prefix_cache.turn_start + "assistant\n"))
    engine.close()
    off, on = _median_calls(runs_off), _median_calls(runs_on)
    first_on, last_on = _first_of_turn(on, 1), _first_of_turn(on, len(TURNS))
    first_off, last_off = _first_of_turn(off, 1), _first_of_turn(off, len(TURNS))
    after = next(t for t in range(2, len(TURNS) + 1)[::-1] if TURNS[t - 2][1])  # the last turn after a tool turn
    after_on, after_off = _first_of_turn(on, after), _first_of_turn(off, after)
    second_calls = [(c.turn, c.prefilled, d.prefilled, c.new) for c, d in zip(on, off) if c.after_tool]
    over_new = [c.prefilled - c.new for c in on[1:]]
    return {
        "model": model_path.name,
        "calls": [f"{c.turn}{'b' if c.after_tool else ''}" for c in on],  # "3b": the second call of turn 3
        "new_tokens_per_call": [c.new for c in on],
        "prefilled_per_call_on": [c.prefilled for c in on],
        "prefilled_per_call_off": [c.prefilled for c in off],
        # after the first call: tokens prefilled beyond the new ones (history read again)
        "prefilled_over_new_on": over_new,
        "prefilled_over_new_off": [d.prefilled - c.new for c, d in zip(on[1:], off[1:])],
        "max_over_new_on": max(over_new),
        "turn_header_tokens": header,  # where a message boundary snapshot resumes before the re-rendered reply
        "ttft_turn1_on_s": round(first_on.ttft_s, 4), "ttft_turn10_on_s": round(last_on.ttft_s, 4),
        "ttft_turn1_off_s": round(first_off.ttft_s, 4), "ttft_turn10_off_s": round(last_off.ttft_s, 4),
        "turn10_vs_turn1_on": round(last_on.ttft_s / first_on.ttft_s, 2),
        "turn10_vs_turn1_off": round(last_off.ttft_s / first_off.ttft_s, 2),
        "ttft_after_tool_turn_on_s": round(after_on.ttft_s, 4), "ttft_after_tool_turn_off_s": round(after_off.ttft_s, 4),
        "after_tool_turn_vs_turn1_on": round(after_on.ttft_s / first_on.ttft_s, 2),
        "ttft_median_of": repeats,
        # (turn, prefilled with the cache, without, new tokens: the tool's result and the next prompt)
        "tool_turn_second_calls": second_calls,
        "same_replies": all(c.reply == d.reply for c, d in zip(on, off)),
        "goal": "after the first call only the new tokens (plus at most a message boundary); turn 10 within 1.3x of turn 1",
        **(agent_tool_turn(tool_model) if agent_turn else {}),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tools", type=int, default=12, help="number of tool schemas in the prefix")
    parser.add_argument("--no-agent-turn", action="store_true", help="skip the tool turn through the agent")
    args = parser.parse_args(argv)
    return show(run(resolve_model(args), tool_count=args.tools, tool_model=args.model, repeats=args.repeats,
                    agent_turn=not args.no_agent_turn))


if __name__ == "__main__":
    main()
