"""A 10-turn conversation with the conversation cache on and off, side by side in one run:
tokens prefilled per model call and time to first token at turn 1 and turn 10; and a tool turn
("What is 12 times 7?") on a model that calls tools (`--model`, else the tests' trained tool
model): tokens its second model call prefills, after the tool's result, with the cache and without."""

from __future__ import annotations

import statistics
import threading
import time

from bench.common import model_arg_parser, resolve_model, show, synthetic_tool_schemas, tool_calling_agent

TURNS = [
    "Turn on the kitchen lights.", "How warm is it in the living room?", "Set a timer for ten minutes.",
    "What is on the shopping list?", "Add eggs and milk to it.", "Is the front door locked?",
    "Dim the bedroom lamp to thirty percent.", "What time is it in Tokyo?", "Remind me to call mum at six.",
    "Thanks, that is all for now.",
]


def conversation(engine, tools: list[dict], system: str, key: str | None, reply_tokens: int) -> list[tuple[float, int]]:
    """(time to first token, tokens prefilled) for each turn, the replies joining the history."""
    from agent.llm.types import Finished, Request, Sampling

    messages, figures = [{"role": "system", "content": system}], []
    for text in TURNS:
        messages.append({"role": "user", "content": text})
        request = Request(messages=list(messages), tools=tools, thinking=False, max_tokens=reply_tokens,
                          sampling=Sampling(temperature=0.0, presence_penalty=0.0), conversation=key)

        def once():
            chunks, start = [], time.perf_counter()
            for item in engine.generate_sync(request, threading.Event()):
                if isinstance(item, Finished):
                    return "".join(chunks), item, time.perf_counter() - start
                chunks.append(item.text)

        reply, finished, _ = engine.run_on_thread(once)
        figures.append((finished.time_to_first_token_s, finished.prompt_tokens - finished.prefix_tokens_reused))
        messages.append({"role": "assistant", "content": reply})
    return figures


def tool_turn(model: str | None) -> dict:
    """(prefilled, reused) tokens of each model call of one tool turn, with the cache and without."""
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
    return {"tool_turn_model": name, "tool_turn_per_call_on": on, "tool_turn_per_call_off": off}


def _median_turns(runs: list[list[tuple[float, int]]]) -> list[tuple[float, int]]:
    """Per turn: the median time to first token over the runs, and the tokens prefilled (the same in every run)."""
    return [(statistics.median(t for t, _ in turn), turn[0][1]) for turn in zip(*runs)]


def run(model_path, *, tool_count: int = 12, reply_tokens: int = 16, tool_model: str | None = None,
        repeats: int = 3) -> dict:
    from agent.config.settings import load_settings
    from agent.llm.mlx_engine import MLXEngine

    engine = MLXEngine(model_path)
    system, tools = load_settings().agent.system_prompt, synthetic_tool_schemas(tool_count)
    conversation(engine, tools, system, None, 2)  # build the prefix, warm the kernels
    runs_off, runs_on = [], []
    for i in range(repeats):  # interleaved, so drift on a busy machine hits both alike
        runs_off.append(conversation(engine, tools, system, None, reply_tokens))
        runs_on.append(conversation(engine, tools, system, f"bench-{i}", reply_tokens))
    engine.close()
    off, on = _median_turns(runs_off), _median_turns(runs_on)
    return {
        "model": model_path.name,
        "prefilled_per_call_off": [p for _, p in off],
        "prefilled_per_call_on": [p for _, p in on],
        "ttft_turn1_on_s": round(on[0][0], 4), "ttft_turn10_on_s": round(on[-1][0], 4),
        "ttft_turn1_off_s": round(off[0][0], 4), "ttft_turn10_off_s": round(off[-1][0], 4),
        "turn10_vs_turn1_on": round(on[-1][0] / on[0][0], 2), "turn10_vs_turn1_off": round(off[-1][0] / off[0][0], 2),
        "ttft_median_of": repeats,
        "goal": "turn 10 within 1.3x of turn 1; history prefilled once",
        **tool_turn(tool_model),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tools", type=int, default=12, help="number of tool schemas in the prefix")
    args = parser.parse_args(argv)
    return show(run(resolve_model(args), tool_count=args.tools, tool_model=args.model, repeats=args.repeats))


if __name__ == "__main__":
    main()
