"""Time to first token with the cached system prompt + tool prefix vs cold, same model, same run."""

from __future__ import annotations

import threading
import time

from bench.common import median, model_arg_parser, resolve_model, show, synthetic_tool_schemas


def measure(engine, messages: list[dict], tools: list[dict], *, cold: bool) -> tuple[float, int, bool]:
    """TTFT of one call on the MLX thread; cold clears the prefix cache first."""
    from agent.llm.types import Finished, Request, Sampling

    def once():
        if cold:
            engine.prefix_cache.clear()
        request = Request(messages=messages, tools=tools, thinking=False, max_tokens=1, sampling=Sampling(temperature=0.0, presence_penalty=0.0))
        start = time.perf_counter()
        for item in engine.generate_sync(request, threading.Event()):
            if isinstance(item, Finished):
                return time.perf_counter() - start, item.prompt_tokens, item.prefix_hit
        raise RuntimeError("no Finished from the engine")

    return engine.run_on_thread(once)


def run(model_path, *, repeats: int = 3, tool_count: int = 24) -> dict:
    from agent.llm.mlx_engine import MLXEngine
    from agent.config.settings import load_settings

    engine = MLXEngine(model_path)
    system = load_settings().agent.system_prompt
    tools = synthetic_tool_schemas(tool_count)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Turn on the kitchen lights."}]
    measure(engine, messages, tools, cold=True)  # warm up kernels and allocator
    cold = [measure(engine, messages, tools, cold=True) for _ in range(repeats)]
    measure(engine, messages, tools, cold=True)  # leave a built prefix for the warm runs
    warm = [measure(engine, messages, tools, cold=False) for _ in range(repeats)]
    assert all(hit for _, _, hit in warm), "warm runs must hit the prefix cache"
    engine.close()
    cold_s, warm_s = median([t for t, _, _ in cold]), median([t for t, _, _ in warm])
    return {
        "model": model_path.name,
        "prompt_tokens": cold[0][1],
        "prefix_tokens_reused": engine.prefix_cache.stats.tokens_reused // max(1, repeats),
        "ttft_cold_s": round(cold_s, 4),
        "ttft_cached_s": round(warm_s, 4),
        "speedup": round(cold_s / warm_s, 1),
        "goal": ">= 20x",
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tools", type=int, default=24, help="number of tool schemas in the prefix")
    args = parser.parse_args(argv)
    result = run(resolve_model(args), repeats=args.repeats, tool_count=args.tools)
    return show(result)


if __name__ == "__main__":
    main()
