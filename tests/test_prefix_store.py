"""The prefilled prefix survives a restart: saved in the home, loaded at the next start, never
trusted blindly (another prompt, another model's file, a broken file: rebuilt). Real tiny MLX model."""

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from agent.llm.mlx_engine import MLXEngine
from agent.llm.types import Chunk, Request, Sampling
from agent.llm.prefix_store import KEEP, PrefixStore

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


def test_another_prompt_is_built_and_saved_beside_the_first(first, model, tmp_path):
    other = "You are a different assistant."
    engine = start(model, tmp_path, system=other)
    try:
        assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
    finally:
        engine.close()
    for system in (other, SYSTEM):  # e.g. `agentd eval`'s prefix and the daemon's: neither replaces the other
        engine = start(model, tmp_path, system=system)
        try:
            assert engine.prefix_cache.stats.loads == 1
        finally:
            engine.close()


def test_only_the_most_recently_used_prefixes_are_kept(first, model, tmp_path):
    for n in range(KEEP + 1):
        start(model, tmp_path, system=f"Assistant number {n}.").close()
    saved = PrefixStore(tmp_path / "cache", model).saved()
    assert len(saved) == KEEP
    engine = start(model, tmp_path, system=SYSTEM)
    try:
        assert engine.prefix_cache.stats.builds == 1  # the oldest went
    finally:
        engine.close()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_file_is_rebuilt_not_trusted(first, model, tmp_path, damage):
    (path,) = PrefixStore(tmp_path / "cache", model).saved()
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
    (old,) = store.saved()
    config = model / "config.json"
    config.write_text(config.read_text() + "\n")  # the model changed on disk: a new key
    try:
        engine = start(model, tmp_path)
        try:
            assert (engine.prefix_cache.stats.builds, engine.prefix_cache.stats.loads) == (1, 0)
        finally:
            engine.close()
    finally:
        assert not old.exists() or len(store.saved()) == 2  # a new key is a new file


def test_one_file_per_prefix_named_by_model_and_key_and_no_temp_files(first, tmp_path):
    (name,) = [p.name for p in (tmp_path / "cache").iterdir()]
    assert re.fullmatch(r"prefix-model-[0-9a-f]{16}\.safetensors", name)
