"""The demo model's prefill speed in each dtype on this machine (which one the CPU should run).

MLX's Linux CPU backend has no fast quantized kernels, so the GGUF's 4-bit weights can be
slower than the same weights dequantized. Each dtype prefills the same tokens, interleaved
over the repeats so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import median, show


def prefill_s(model, tokens: list[int]) -> float:
    """Seconds to prefill `tokens` into a fresh cache, in one step."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    start = time.perf_counter()
    model(mx.array(tokens)[None], cache=cache)
    mx.eval([c.state for c in cache])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import mlx.core as mx
    import mlx_lm

    from agent.llm.demo_model import BFLOAT16, QUANTIZED, ensure_demo_model

    models = Path(tempfile.mkdtemp(prefix="agentd-bench-demo-"))
    loaded, result = {}, {}
    for dtype in (QUANTIZED, BFLOAT16):
        start = time.perf_counter()
        folder = ensure_demo_model(models, dtype)
        result[f"convert_{dtype}_s"] = round(time.perf_counter() - start, 1)
        loaded[dtype] = mlx_lm.load(str(folder))[0]
    float32, _ = mlx_lm.load(str(ensure_demo_model(models, BFLOAT16)))
    float32.set_dtype(mx.float32)
    loaded["float32"] = float32
    tokens = [(i * 7919) % 40000 + 100 for i in range(args.tokens)]
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(args.repeats):
        for name, model in loaded.items():
            times[name].append(prefill_s(model, tokens))
    for name, values in times.items():
        result[f"prefill_{name}_tok_per_s"] = round(args.tokens / median(values), 1)
    fastest = max(times, key=lambda n: -median(times[n]))
    result["fastest"] = fastest
    result["bfloat16_vs_4bit"] = round(median(times[QUANTIZED]) / median(times[BFLOAT16]), 2)
    return show(result)


if __name__ == "__main__":
    main()
