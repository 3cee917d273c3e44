"""Image turns: time to first token for a text turn vs the same turn with a 640x480 picture,
and how much of that the picture's encoding (processor + vision tower) takes.

A text turn starts from the cached system prompt + tools (as every agentd turn does); an image
turn goes through mlx-vlm and prefills the whole prompt (its cache cannot be shared with
mlx-lm's), so the cold text turn is shown too. Runs on a Qwen3.5 with its vision weights:
--model (or the configured model) when it has them, else the tests' tiny vision model.
"""

from __future__ import annotations

import io
from pathlib import Path

from bench.common import median, model_arg_parser, show, synthetic_tool_schemas
from bench.prefix_cache import measure


def vision_model(args) -> Path:
    """--model (or the configured model) when it has vision weights, else the tiny vision fixture."""
    from agent.llm.vision import has_vision_tower

    if not args.tiny:
        from bench.common import resolve_model

        chosen = resolve_model(args)
        if has_vision_tower(chosen):
            return chosen
        print(f"bench vision: {chosen.name} has no vision weights; measuring the tiny vision model")
    from agent.testkit.tiny_qwen_vl import build_tiny_qwen35_vl, fixture_key
    from agent.testkit.train import cached_model

    return cached_model("tiny-qwen35-vl", f"vl seed=0 {fixture_key()}", lambda d: build_tiny_qwen35_vl(d, seed=0))


def test_picture(width: int = 640, height: int = 480):
    """A photo-like picture (noise over a gradient: PNG cannot squeeze it to nothing)."""
    import numpy as np
    from PIL import Image

    from agent.images import picture_from_bytes

    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 30, (height, width, 3)), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return picture_from_bytes(out.getvalue(), "bench picture", max_pixels=width * height, max_bytes=10**8)


def run(model_path: Path, *, repeats: int = 3, tool_count: int = 10) -> dict:
    from agent.config.settings import load_settings
    from agent.llm.mlx_engine import MLXEngine

    engine = MLXEngine(model_path)
    if engine.vision is None:
        raise SystemExit(f"bench vision: {engine.cannot_see()}")
    picture = test_picture()
    system = {"role": "system", "content": load_settings().agent.system_prompt}
    question = "Is there a parcel at the front door?"
    tools = synthetic_tool_schemas(tool_count)
    text = [system, {"role": "user", "content": question}]
    seen = [system, {"role": "user", "content": question, "images": [picture]}]
    measure(engine, seen, tools, cold=False)  # warm up kernels, the processor and the allocator
    measure(engine, text, tools, cold=True)  # leaves the prefix built
    cached = [measure(engine, text, tools, cold=False) for _ in range(repeats)]
    assert all(hit for _, _, hit in cached), "text turns must hit the prefix cache"
    image = [measure(engine, seen, tools, cold=False) for _ in range(repeats)]
    cold = [measure(engine, text, tools, cold=True) for _ in range(repeats)]
    prompt = engine.render(seen, tools, thinking=False)
    encodes = [engine.run_on_thread(engine.vision.encode_images, prompt, [picture]) for _ in range(repeats)]
    engine.close()
    text_s, image_s, cold_s = (median([t for t, _, _ in runs]) for runs in (cached, image, cold))
    encode_s = median([s for _, s in encodes])
    return {
        "model": model_path.name,
        "picture": f"{picture.width}x{picture.height} ({encodes[0][0]} image tokens)",
        "prompt_tokens_text": cached[0][1],
        "prompt_tokens_image": image[0][1],
        "ttft_text_cached_s": round(text_s, 4),
        "ttft_text_cold_s": round(cold_s, 4),
        "ttft_image_s": round(image_s, 4),
        "image_vs_text_cached": round(image_s / text_s, 1),
        "image_vs_text_cold": round(image_s / cold_s, 2),
        "image_encode_s": round(encode_s, 4),
        "encode_share_of_image_ttft": round(encode_s / image_s, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = model_arg_parser(__doc__)
    parser.add_argument("--tools", type=int, default=10, help="number of tool schemas in the prompt")
    args = parser.parse_args(argv)
    return show(run(vision_model(args), repeats=args.repeats, tool_count=args.tools))


if __name__ == "__main__":
    main()
