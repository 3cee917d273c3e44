"""The MLX backend on a real (tiny, random) Qwen3.5 model: streaming, prefix cache, thinking."""

import asyncio
import threading

import pytest

from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Finished, Request, Sampling
from agent.tools import ToolRegistry, build_tool

GREEDY = Sampling(temperature=0.0, presence_penalty=0.0)


def lamp(room: str, on: bool) -> str:
    """Switch the lamp in a room.

    Args:
        room: The room.
        on: True for on.
    """
    return "ok"


@pytest.fixture(scope="module")
def engine(tiny_qwen_bpe):
    engine = MLXEngine(tiny_qwen_bpe)
    yield engine
    engine.close()


def request(text="hello there", max_tokens=12, tools=None, thinking=False):
    tools = tools if tools is not None else ToolRegistry([build_tool(lamp)]).schemas()
    messages = [{"role": "system", "content": "You are a test assistant."}, {"role": "user", "content": text}]
    return Request(messages=messages, tools=tools, thinking=thinking, max_tokens=max_tokens, sampling=GREEDY)


def generate(engine, req, cancel=None):
    async def collect():
        return [item async for item in engine.stream(req, cancel)]

    items = asyncio.run(collect())
    assert isinstance(items[-1], Finished) and sum(isinstance(i, Finished) for i in items) == 1
    return "".join(i.text for i in items if isinstance(i, Chunk)), items[-1]


def test_tool_format_comes_from_mlx_lm(engine):
    assert engine.tool_format.tags.tool_start == "<tool_call>"
    assert engine.tool_format.parse.__module__.endswith("qwen3_coder")


def test_render_lists_tools_and_disables_thinking(engine):
    text = engine.render(request().messages, request().tools, thinking=False)
    assert '"name": "lamp"' in text and "<tools>" in text
    assert text.endswith("<think>\n\n</think>\n\n")
    assert engine.render(request().messages, request().tools, thinking=True).endswith("<think>\n")


def test_stream_respects_max_tokens(engine):
    _, finished = generate(engine, request(max_tokens=5))
    assert finished.generated_tokens <= 5
    assert finished.prompt_tokens > 20


def test_prefix_cache_gives_the_same_tokens_as_no_cache(engine):
    engine.prefix_cache.enabled = False
    try:
        cold_text, cold = generate(engine, request("what is the weather", max_tokens=16))
    finally:
        engine.prefix_cache.enabled = True
    engine.prefix_cache.clear()
    first_text, first = generate(engine, request("what is the weather", max_tokens=16))
    hit_text, hit = generate(engine, request("what is the weather", max_tokens=16))
    assert cold_text == first_text == hit_text
    assert not cold.prefix_hit and not first.prefix_hit and hit.prefix_hit


def test_a_hit_skips_the_prefix_prefill(engine):
    engine.prefix_cache.clear()
    stats = engine.prefix_cache.stats
    builds = stats.builds
    generate(engine, request("turn on the lamp"))
    _, hit = generate(engine, request("something else entirely"))
    assert stats.builds == builds + 1  # one prefill of the prefix for both turns
    assert hit.prefix_hit and hit.prefix_tokens_reused > 0
    assert hit.prefix_tokens_reused < hit.prompt_tokens


def test_changing_the_tools_rebuilds_the_prefix(engine):
    generate(engine, request())
    builds = engine.prefix_cache.stats.builds
    _, finished = generate(engine, request(tools=[]))
    assert not finished.prefix_hit and engine.prefix_cache.stats.builds == builds + 1


def test_warm_up_builds_the_prefix_before_the_first_call(engine):
    engine.prefix_cache.clear()
    req = request()
    engine.warm_up(req.messages[0]["content"], req.tools)
    _, finished = generate(engine, req)
    assert finished.prefix_hit


def test_a_prefix_build_ahead_of_time_gives_up_when_told_to_stop(engine):
    """close() sets the stop: a daemon stopping during a slow warm-up does not wait it out."""
    req = request()
    prefix = engine.encode(engine.prefix_text(req.messages[0]["content"], req.tools))
    assert len(prefix) > 64  # more than one step, so there is a point to stop at
    engine.prefix_cache.clear()
    stop = threading.Event()
    stop.set()
    engine.run_on_thread(engine.prefix_cache.prime, prefix, stop)
    assert engine.prefix_cache._tokens is None  # nothing half-built is kept
    engine.run_on_thread(engine.prefix_cache.prime, prefix)
    assert engine.prefix_cache._tokens == prefix
    _, finished = generate(engine, req)
    assert finished.prefix_hit  # built in small steps, it serves the call like any other


def test_cancel_stops_generation(engine):
    cancel = threading.Event()
    cancel.set()
    _, finished = generate(engine, request(max_tokens=200), cancel)
    assert finished.finish_reason == "cancelled" and finished.generated_tokens <= 2


def test_a_process_that_generated_exits_cleanly(tiny_qwen_bpe, tmp_path):
    # mlx-lm's thread-local generation stream used from a worker thread made the process
    # abort at exit ("terminate called without an active exception", exit code 134).
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "gen.py"
    script.write_text(
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from agent.llm.mlx_engine import MLXEngine\nfrom agent.llm.types import Request, Sampling\n"
        "e = MLXEngine(Path(sys.argv[1]))\n"
        "r = Request(messages=[{'role': 'system', 'content': 's'}, {'role': 'user', 'content': 'u'}], tools=[],\n"
        "            thinking=False, max_tokens=3, sampling=Sampling(temperature=0.0))\n"
        "e.run_on_thread(lambda: list(e.generate_sync(r, threading.Event())))\n"
        "e.close()\n"
    )
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script), str(tiny_qwen_bpe)], cwd=repo, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-500:]


def test_real_qwen35_vocabulary_model_runs_through_the_engine(tiny_qwen_vocab):
    engine = MLXEngine(tiny_qwen_vocab)
    try:
        assert engine.encode("<tool_call>") == [engine.tokenizer.convert_tokens_to_ids("<tool_call>")]
        text, finished = generate(engine, request("turn on the lamp", max_tokens=4))
        assert finished.generated_tokens <= 4 and finished.prompt_tokens > 100
        _, hit = generate(engine, request("and off again", max_tokens=2))
        assert hit.prefix_hit
    finally:
        engine.close()
