"""Image turns on a real (tiny, random) Qwen3.5 vision-language model: mlx-vlm for pictures,
mlx-lm for text, one set of weights, and the text caches untouched by image calls."""

import asyncio
import io

import pytest

from agent.images import picture_from_bytes
from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Finished, Request, Sampling

GREEDY = Sampling(temperature=0.0, presence_penalty=0.0)
SYSTEM = {"role": "system", "content": "You are a home assistant. Answer briefly."}


def png(width=640, height=480, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_qwen_vl):
    engine = MLXEngine(tiny_qwen_vl)
    yield engine
    engine.close()


def run(engine, messages, *, conversation=None, max_tokens=4):
    async def collect():
        request = Request(messages=messages, tools=[], thinking=False, max_tokens=max_tokens, sampling=GREEDY,
                          conversation=conversation)
        return [item async for item in engine.stream(request)]

    items = asyncio.run(collect())
    return "".join(i.text for i in items if isinstance(i, Chunk)), items[-1]


def test_the_text_model_runs_on_the_vision_models_arrays(engine, tiny_qwen_vl):
    import mlx.core as mx
    from mlx_lm import load

    shared = engine.model.language_model.model.embed_tokens.weight
    assert shared is engine.vision.model.language_model.model.embed_tokens.weight
    # ... and they are the checkpoint's: a plain mlx-lm load of the folder gives the same logits.
    plain, _ = load(str(tiny_qwen_vl))
    ids = mx.array([engine.encode("the kitchen lights are on")])

    def compare():  # on the MLX thread: arrays evaluate on the stream that made them
        ours, theirs = engine.model(ids), plain(ids)
        return ours.shape == theirs.shape, mx.abs(ours - theirs).max().item()

    same_shape, largest_difference = engine.run_on_thread(compare)
    assert same_shape and largest_difference < 1e-5


def test_an_image_call_goes_through_mlx_vlm_and_counts_the_image_tokens(engine):
    picture = picture_from_bytes(png(), "red.png", max_pixels=307200, max_bytes=10**7)
    text, done = run(engine, [SYSTEM, {"role": "user", "content": "What colour is it?", "images": [picture]}])
    assert isinstance(done, Finished) and done.generated_tokens == 4
    assert not done.prefix_hit
    # 640x480 is 300 image tokens (one per 32x32 pixels) besides the text.
    _, text_only = run(engine, [SYSTEM, {"role": "user", "content": "What colour is it?"}], max_tokens=1)
    assert done.prompt_tokens - text_only.prompt_tokens == 300 + 2  # + <|vision_start|>, <|vision_end|>


def test_a_text_turn_after_an_image_turn_still_hits_the_prefix_cache(engine):
    engine.forget_prompts()
    engine.run_on_thread(lambda: None)
    _, first = run(engine, [SYSTEM, {"role": "user", "content": "hello"}], conversation="kitchen")  # builds the prefix
    hits = engine.prefix_cache.stats.hits
    picture = picture_from_bytes(png(320, 240), "small.png", max_pixels=307200, max_bytes=10**7)
    _, seen = run(engine, [SYSTEM, {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                           {"role": "user", "content": "and this?", "images": [picture]}], conversation="kitchen")
    assert not seen.prefix_hit and engine.prefix_cache.stats.hits == hits  # neither read nor written
    _, after = run(engine, [SYSTEM, {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                            {"role": "user", "content": f"{picture.placeholder} and this?"}, {"role": "assistant", "content": "red"},
                            {"role": "user", "content": "thanks"}], conversation="kitchen")
    assert after.prefix_hit and after.prefix_tokens_reused > 0


def test_greedy_image_answers_repeat(engine):
    """The image path is deterministic under greedy sampling (no state leaks between calls)."""
    picture = picture_from_bytes(png(color=(10, 200, 10)), "green.png", max_pixels=307200, max_bytes=10**7)
    messages = [SYSTEM, {"role": "user", "content": "What is this?", "images": [picture]}]
    assert run(engine, messages)[0] == run(engine, messages)[0]


def test_ask_about_image_answers_inside_a_running_loop(engine):
    """ToolContext.vision's engine side: a one-shot image call from the event loop."""
    async def ask():
        return await engine.ask_about_image(png(), "Is the door open?", max_pixels=307200, max_bytes=10**7, max_tokens=3)

    answer = asyncio.run(ask())
    assert isinstance(answer, str)
    assert engine.cannot_see() is None


def test_a_text_only_model_says_it_cannot_see(tiny_qwen_bpe):
    engine = MLXEngine(tiny_qwen_bpe)
    try:
        assert engine.vision is None
        assert "no vision weights" in engine.cannot_see()
    finally:
        engine.close()


def test_a_tool_asks_the_model_about_a_picture_through_its_context(engine):
    """ToolContext.vision as the daemon hands it in: a tool runs between a turn's model calls,
    from the event loop, and its image call runs on the same MLX thread without waiting on it."""
    from agent.actions import Action
    from agent.config.settings import default_settings
    from agent.daemon.assembly import vision_hook
    from agent.tools import ToolContext, ToolRegistry
    from agent.turn import Agent

    async def look(question: str, ctx: ToolContext) -> str:
        """Look at the garage camera.

        Args:
            question: What to find out.
        """
        if ctx.vision is None:
            return "no vision"
        return "answer: " + await ctx.vision(png(), question)

    registry = ToolRegistry()
    registry.add(look)
    agent = Agent(llm=engine, registry=registry, system_prompt="hi")
    agent.vision = vision_hook(engine, default_settings().vision.model_copy(update={"answer_max_tokens": 3}))
    assert agent.vision is not None

    async def run_tool():
        return await agent.executor().run(Action(tool="look", arguments={"question": "Is the garage door open?"}))

    outcome = asyncio.run(run_tool())
    assert outcome.status == "ok" and outcome.result.startswith("answer: "), outcome


def test_no_vision_hook_where_the_engine_cannot_see(tiny_qwen_bpe):
    from agent.config.settings import default_settings
    from agent.daemon.assembly import vision_hook

    class RemoteLike:  # the remote backend has no cannot_see: it takes no pictures
        name = "remote"

    assert vision_hook(RemoteLike(), default_settings().vision) is None
    engine = MLXEngine(tiny_qwen_bpe)
    try:
        assert vision_hook(engine, default_settings().vision) is None
    finally:
        engine.close()
