"""Decode cost of constrained tool calls vs unconstrained, same model, same prompt, one run."""

from __future__ import annotations

import time

from bench.common import median, model_arg_parser, resolve_model

PROMPT = "Write four short lines about the sea at night."
CALL_PROMPTS = ["Turn on the kitchen lights.", "What is 17% of 230?", "Remind me to call mum at 6 pm.",
                "Set a timer for ten minutes.", "What time is it in Tokyo?"]


def decode_ms_per_token(engine, request) -> tuple[float, int]:
    """Milliseconds per generated token after the first (prefill and first token excluded)."""
    from agent.llm.types import Finished

    def once():
        start = time.perf_counter()
        for item in engine.generate_sync(request):
            if isinstance(item, Finished):
                total = time.perf_counter() - start
                decode = total - item.time_to_first_token_s
                return decode * 1000 / max(1, item.generated_tokens - 1), item.generated_tokens
        raise RuntimeError("no Finished from the engine")

    return engine.run_on_thread(once)


# Token budgets of one sampled call. A constrained random-weight model fills each string to
# its cap (grammar.STRING_MAX_TOKENS), so it needs room; an unconstrained one never closes a
# call, whatever the budget, while a real model's calls here are 20-60 tokens.
CALL_MAX_TOKENS = {True: 320, False: 96}


class StartWith:
    """A logits processor that makes the model write these tokens first, then leaves it free:
    the unconstrained side of the validity count starts inside a tool call this way."""

    def __init__(self, ids: list[int]):
        self.ids, self.calls = ids, 0

    def __call__(self, tokens, logits):
        import mlx.core as mx

        self.calls += 1  # the first call is the prompt's: it samples the first generated token
        if self.calls > len(self.ids):
            return logits
        return mx.where(mx.arange(logits.shape[-1]) == self.ids[self.calls - 1], logits, -mx.inf)


def valid_calls(engine, registry, system: str, *, samples: int, constrained: bool, floor: float = 0.0) -> tuple[int, int]:
    """How many of `samples` sampled tool calls parse and fit the tools' schemas, and how many
    the confidence floor abandoned.

    Both sides are made to write a call: the constrained one by a grammar that requires one,
    the unconstrained one by being made to write the tool-call start tag first. Sampling is
    plain (temperature 1), the hardest case for a grammar-free model. Both go through the
    engine, so the prefilled system prompt and tools are reused. A random-weight model means
    none of its calls, so with the floor (`floor` > 0) every one should be abandoned; at 0 the
    grammar forces each one through, which measures the grammar alone.
    """
    from agent.llm.types import Chunk, Finished, Request, Sampling
    from agent.tool_calls import checked_calls

    tools = registry.schemas()
    plain = Sampling(temperature=1.0, top_p=1.0, top_k=0, presence_penalty=0.0)
    good = abandoned = 0
    for i in range(samples):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": CALL_PROMPTS[i % len(CALL_PROMPTS)]}]
        if constrained:
            first = engine.guides().processor(tools, thinking=False, thinking_budget=None, constrained=True, require_call=True, floor=floor)
        else:
            first = StartWith(engine.encode(engine.tool_format.tags.tool_start + "\n"))
        request = Request(messages, tools, False, CALL_MAX_TOKENS[constrained], plain, logits_processors=[first])
        items = engine.run_on_thread(lambda: list(engine.generate_sync(request)))
        text = "".join(item.text for item in items if isinstance(item, Chunk))
        finish = next(item.finish_reason for item in items if isinstance(item, Finished))
        checked = checked_calls(text, finish, engine.tool_format, registry)
        good += bool(checked) and all(problem is None for _, problem in checked)
        abandoned += constrained and first.abandoned
    return good, abandoned


def run(model_path, *, repeats: int = 3, max_tokens: int = 64, samples: int = 20) -> dict:
    """Figures for `agentd bench`: ms/token both ways and their ratio, set-up and compile time,
    and how many sampled tool calls are valid with and without the grammar."""
    from agent.daemon.assembly import core_registry
    from agent.llm.constrained import CONFIDENCE_FLOOR
    from agent.llm.mlx_engine import MLXEngine
    from agent.llm.types import Request, Sampling
    from agent.config.settings import load_settings

    engine = MLXEngine(model_path, seed=0)
    registry = core_registry()
    tools = registry.schemas()
    system = load_settings().agent.system_prompt
    messages = [{"role": "system", "content": system}, {"role": "user", "content": PROMPT}]
    greedy = Sampling(temperature=0.0, presence_penalty=0.0)

    def request(constrained: bool, processors: list | None = None) -> Request:
        return Request(messages=messages, tools=tools, thinking=False, max_tokens=max_tokens, sampling=greedy,
                       constrained=constrained, logits_processors=processors or [])

    guides = engine.run_on_thread(engine.guides)
    engine.run_on_thread(guides.ll_tokenizer)
    compile_ms = []
    for _ in range(repeats):  # a fresh cache each time, so each one compiles
        guides.clear()
        engine.run_on_thread(lambda: guides.matcher(tools, thinking=False))
        compile_ms.append(guides.last_compile_s * 1000)

    decode_ms_per_token(engine, request(False))  # warm up kernels and the prefix cache
    decode_ms_per_token(engine, request(True))
    free, text, calls = [], [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        free.append(decode_ms_per_token(engine, request(False))[0])
        text.append(decode_ms_per_token(engine, request(True))[0])
        # Inside a call the floor's test runs at every step; at floor 0 it never stops the
        # call, so a random-weight model's call lasts long enough to time.
        forced = guides.processor(tools, thinking=False, thinking_budget=None, constrained=True, require_call=True, floor=0.0)
        calls.append(decode_ms_per_token(engine, request(False, [forced]))[0])
    valid = {side: valid_calls(engine, registry, system, samples=samples, constrained=side)[0] for side in (True, False)}
    _, abandoned = valid_calls(engine, registry, system, samples=samples, constrained=True, floor=CONFIDENCE_FLOOR)
    engine.close()
    plain, constrained = median(free), median(text)
    return {
        "model": model_path.name,
        "vocab_width": guides.vocab_width,
        "tools": len(tools),
        "unconstrained_ms_per_token": round(plain, 3),
        "constrained_ms_per_token": round(constrained, 3),
        # Each pair ran back to back, so the median of their ratios shrugs off a busy machine.
        "ratio": round(median([t / f for t, f in zip(text, free)]), 3),
        "goal": "<= 1.10x",
        "inside_tool_call_ms_per_token": round(median(calls), 3),
        # The mask and the confidence floor together, per token inside a call, against the
        # same model writing free text unconstrained (the model's step costs the same).
        "inside_tool_call_ratio": round(median([c / f for c, f in zip(calls, free)]), 3),
        "grammar_compile_ms": round(median(compile_ms), 2),
        "tokenizer_setup_s": round(guides.setup_s, 2),
        "valid_calls_constrained": f"{valid[True]}/{samples}",
        "valid_calls_unconstrained": f"{valid[False]}/{samples}",
        "confidence_floor": CONFIDENCE_FLOOR,
        "random_calls_abandoned_by_floor": f"{abandoned}/{samples}",
        "call_max_tokens": f"{CALL_MAX_TOKENS[True]} constrained, {CALL_MAX_TOKENS[False]} unconstrained",
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per timed generation")
    parser.add_argument("--samples", type=int, default=20, help="sampled tool calls per side for the validity counts")
    args = parser.parse_args(argv)
    result = run(resolve_model(args), repeats=args.repeats, max_tokens=args.max_tokens, samples=args.samples)
    for key, value in result.items():
        print(f"{key:30} {value}")
    return result


if __name__ == "__main__":
    main()
