"""The prefilled prefix survives a restart: saved in the home, loaded at the next start, never
trusted blindly (another prompt, another model's file, a broken file: rebuilt). Real tiny MLX model."""

import asyncio
import shutil
from pathlib import Path

import pytest

from agent.llm.mlx_engine import Chunk, MLXEngine, Request, Sampling
from agent.llm.prefix_store import PrefixStore

GREEDY = Sampling(temperature=0.0, presence_penalty=0.0)
SYSTEM = "You are a test assistant that answers briefly."


def start(model, home, system=SYSTEM):
    """A fresh engine (a daemon start) warmed up with this system prompt; waits for the warm-up."""
    engine = MLXEngine(model, prefix_store=PrefixStore(home / "cache", model))
    engine.warm_up(system, [])
    engine.run_on_thread(lambda: None)  # the warm-up ran before this, on the same thread
    return engine


def reply(engine, system=SYSTEM) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "hello there"}]
    request = Request(messages=messages, tools=[], thinking=False, max_tokens=8, sampling=GREEDY)

    async def collect():
        return "".join([i.text async for i in engine.stream(request) if isinstance(i, Chunk)])

    return asyncio.run(collect())


@pytest.fixture()
def model(tiny_qwen_bpe, tmp_path):
    """A copy of the tests' tiny model that a test may change."""
    return Path(shutil.copytree(tiny_qwen_bpe, tmp_path / "model"))


@pytest.fixture()
def first(model, tmp_path):
    """The first start: builds the prefix and saves it; its reply is the reference."""
    engine = start(model, tmp_path)
    try:
        assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
        assert engine.warmup.report()["source"] == "prefix built"
        yield reply(engine)
    finally:
        engine.close()


def test_a_restart_loads_the_saved_prefix_and_replies_the_same(first, model, tmp_path):
    engine = start(model, tmp_path)
    try:
        stats = engine.prefix_cache.stats
        assert (stats.builds, stats.loads) == (0, 1)
        assert engine.warmup.ready and engine.warmup.report()["source"] == "prefix loaded from the home folder"
        assert reply(engine) == first
        assert stats.hits == 1  # the turn started from the loaded prefix
    finally:
        engine.close()


def test_another_prompt_rebuilds_and_replaces_the_saved_prefix(first, model, tmp_path):
    other = "You are a different assistant."
    engine = start(model, tmp_path, system=other)
    try:
        assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
    finally:
        engine.close()
    engine = start(model, tmp_path, system=other)  # and that one is what is saved now
    try:
        assert engine.prefix_cache.stats.loads == 1
    finally:
        engine.close()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_file_is_rebuilt_not_trusted(first, model, tmp_path, damage):
    path = PrefixStore(tmp_path / "cache", model).path
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a safetensors file" * 10, "empty": b""}[damage])
    engine = start(model, tmp_path)
    try:
        assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
        assert reply(engine) == first
    finally:
        engine.close()
    assert path.read_bytes() == data  # saved again, whole


def test_a_file_made_for_another_model_is_not_used(first, model, tmp_path):
    store = PrefixStore(tmp_path / "cache", model)
    config = model / "config.json"
    config.write_text(config.read_text() + "\n")  # the model changed on disk: a new key
    try:
        engine = start(model, tmp_path)
        try:
            assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
        finally:
            engine.close()
    finally:
        assert store.path.is_file()


def test_one_file_per_model_and_no_temp_files(first, tmp_path):
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["prefix-model.safetensors"]
