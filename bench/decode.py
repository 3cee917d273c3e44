"""Decode speed: tokens/s of bare mlx-lm on the model, and on Apple Silicon its share of the
memory-bandwidth bound (every token reads all the weights once: bandwidth / weight bytes).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from bench.common import median, model_arg_parser, resolve_model, show

# Unified-memory bandwidth in GB/s (Apple's figures; binned Max chips have less).
APPLE_BANDWIDTH_GBS = {
    "M1": 68, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
    "M5": 153,
}
PROMPT = "Write a short story about a lighthouse keeper and a storm."


def apple_chip() -> str | None:
    """'M2 Pro' on Apple Silicon, None elsewhere."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return None
    brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout
    return brand.replace("Apple", "").strip() or None


def weight_bytes(model: Path) -> int:
    return sum(f.stat().st_size for f in Path(model).glob("*.safetensors"))


def run(model_path: Path, *, tokens: int = 64, repeats: int = 3) -> dict:
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(model_path))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    speeds, generated = [], 0
    for i in range(repeats + 1):  # the first run warms up kernels and is not counted
        last = None
        for last in stream_generate(model, tokenizer, prompt, max_tokens=tokens):
            pass
        if i and last is not None:
            speeds.append(last.generation_tps)
            generated = last.generation_tokens
    tps = median(speeds)
    size = weight_bytes(model_path)
    chip = apple_chip()
    bandwidth = APPLE_BANDWIDTH_GBS.get(chip) if chip else None
    bound = bandwidth * 1e9 / size if bandwidth and size else None
    return {
        "model": Path(model_path).name,
        "weights_mb": round(size / 1e6, 1),
        "generated_tokens": generated,
        "decode_tokens_per_s": round(tps, 1),
        "chip": chip or f"{platform.machine()} {platform.system()} (not Apple Silicon)",
        "bandwidth_bound_tokens_per_s": round(bound, 1) if bound else None,
        "share_of_bandwidth_bound": round(tps / bound, 3) if bound else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args(argv)
    result = run(resolve_model(args), tokens=args.tokens, repeats=args.repeats)
    return show(result)


if __name__ == "__main__":
    main()
