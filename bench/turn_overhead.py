"""A full agent turn vs bare mlx_lm.stream_generate on the same prompt, producing the same tokens."""

from __future__ import annotations

import asyncio
import time

from bench.common import median, model_arg_parser, resolve_model, show

PROMPT = "Write four short lines about the sea at night."


def bare_generate(engine, tokens: list[int], max_tokens: int) -> tuple[float, str]:
    """mlx-lm alone: the same prompt tokens, greedy, on the same thread, from the same
    prefilled prefix (a copy of it, as the turn uses), so only the turn's own work differs."""
    import copy

    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    def once():
        start = time.perf_counter()
        cache = copy.deepcopy(engine.prefix_cache._cache)
        reused = len(engine.prefix_cache._tokens)
        responses = stream_generate(engine.model, engine.tokenizer, tokens[reused:], max_tokens=max_tokens, sampler=make_sampler(temp=0.0), prompt_cache=cache)
        text = "".join(r.text for r in responses)
        return time.perf_counter() - start, text

    return engine.run_on_thread(once)


def agent_turn(agent) -> tuple[float, str, int]:
    from agent.events import ReplyDone

    async def once():
        start = time.perf_counter()
        async for event in agent.respond(PROMPT):
            if isinstance(event, ReplyDone):
                return time.perf_counter() - start, event.text, event.stats.model_calls

    return asyncio.run(once())


def run(model_path, *, repeats: int = 3, max_tokens: int = 48) -> dict:
    from agent.daemon.assembly import core_registry
    from agent.llm.mlx_engine import MLXEngine
    from agent.llm.types import Sampling
    from agent.config.settings import load_settings
    from agent.turn import Agent, TurnLimits

    engine = MLXEngine(model_path)
    registry = core_registry()
    system = load_settings().agent.system_prompt
    agent = Agent(
        llm=engine, registry=registry, system_prompt=system,
        limits=TurnLimits(max_tokens=max_tokens, history_messages=0),
        sampling=Sampling(temperature=0.0, presence_penalty=0.0),
    )
    messages = [{"role": "system", "content": agent.system_prompt()}, {"role": "user", "content": PROMPT}]
    tokens = engine.encode(engine.render(messages, registry.schemas(), thinking=False))

    agent_turn(agent)  # warm up, and leave the prefix prefilled for both sides
    assert engine.prefix_cache._tokens == tokens[: len(engine.prefix_cache._tokens)]
    bare, turns = [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        bare.append(bare_generate(engine, tokens, max_tokens))
        turns.append(agent_turn(agent))
    engine.close()
    if any(calls != 1 for _, _, calls in turns):
        raise SystemExit("the model called a tool for the benchmark prompt; pick another prompt or model")
    same = all(b[1].strip() == t[1] for b, t in zip(bare, turns))
    bare_s, turn_s = median([b[0] for b in bare]), median([t[0] for t in turns])
    return {
        "model": model_path.name,
        "prompt_tokens": len(tokens),
        "bare_stream_generate_s": round(bare_s, 4),
        "agent_turn_s": round(turn_s, 4),
        "ratio": round(turn_s / bare_s, 3),
        "same_text": same,
        "goal": "<= 1.05x",
    }


def main(argv: list[str] | None = None) -> dict:
    args = model_arg_parser(__doc__).parse_args(argv)
    result = run(resolve_model(args), repeats=args.repeats)
    return show(result)


if __name__ == "__main__":
    main()
