"""Decode cost of constrained tool calls vs unconstrained, same model, same prompt, one run."""

from __future__ import annotations

import time

from bench.common import median, model_arg_parser, resolve_model, synthetic_tool_schemas

PROMPT = "Write four short lines about the sea at night."


def decode_ms_per_token(engine, request) -> tuple[float, int]:
    """Milliseconds per generated token after the first (prefill and first token excluded)."""
    from agent.llm.mlx_engine import Finished

    def once():
        start = time.perf_counter()
        for item in engine.generate_sync(request):
            if isinstance(item, Finished):
                total = time.perf_counter() - start
                decode = total - item.time_to_first_token_s
                return decode * 1000 / max(1, item.generated_tokens - 1), item.generated_tokens
        raise RuntimeError("no Finished from the engine")

    return engine.run_on_thread(once)


def run(model_path, *, repeats: int = 3, max_tokens: int = 64, tool_count: int = 10) -> dict:
    """Figures for `agentd bench`: ms/token both ways and their ratio, set-up and compile time."""
    from agent.llm.mlx_engine import MLXEngine, Request, Sampling
    from agent.settings import load_settings

    engine = MLXEngine(model_path)
    tools = synthetic_tool_schemas(tool_count)
    messages = [{"role": "system", "content": load_settings().agent.system_prompt}, {"role": "user", "content": PROMPT}]
    greedy = Sampling(temperature=0.0, presence_penalty=0.0)

    def request(constrained: bool, processors: list | None = None) -> Request:
        return Request(messages=messages, tools=tools, thinking=False, max_tokens=max_tokens, sampling=greedy,
                       constrained=constrained, logits_processors=processors or [])

    guides = engine.run_on_thread(engine.guides)
    engine.run_on_thread(guides.ll_tokenizer)
    compile_ms = []
    for _ in range(repeats):  # a fresh cache each time, so each one compiles
        guides._grammars.clear()
        engine.run_on_thread(lambda: guides.matcher(tools, thinking=False))
        compile_ms.append(guides.last_compile_s * 1000)

    decode_ms_per_token(engine, request(False))  # warm up kernels and the prefix cache
    decode_ms_per_token(engine, request(True))
    free, text, calls = [], [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        free.append(decode_ms_per_token(engine, request(False))[0])
        text.append(decode_ms_per_token(engine, request(True))[0])
        forced = guides.processor(tools, thinking=False, thinking_budget=None, constrained=True, require_call=True)
        calls.append(decode_ms_per_token(engine, request(False, [forced]))[0])
    engine.close()
    plain, constrained = median(free), median(text)
    return {
        "model": model_path.name,
        "vocab_width": guides.vocab_width,
        "tools": tool_count,
        "unconstrained_ms_per_token": round(plain, 3),
        "constrained_ms_per_token": round(constrained, 3),
        "ratio": round(constrained / plain, 3),
        "goal": "<= 1.10x",
        "inside_tool_call_ms_per_token": round(median(calls), 3),
        "grammar_compile_ms": round(median(compile_ms), 2),
        "tokenizer_setup_s": round(guides.setup_s, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tools", type=int, default=10, help="number of tool schemas in the grammar")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    result = run(resolve_model(args), repeats=args.repeats, max_tokens=args.max_tokens, tool_count=args.tools)
    for key, value in result.items():
        print(f"{key:30} {value}")
    return result


if __name__ == "__main__":
    main()
