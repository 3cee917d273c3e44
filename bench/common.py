"""Shared set-up for benchmarks: which model to measure, and small statistics."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path


def model_arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", help="MLX model folder (default: the configured model, else the demo model)")
    parser.add_argument("--tiny", action="store_true", help="measure the tests' tiny Qwen3.5 (real 248k vocabulary) instead")
    parser.add_argument("--home", help="agentd home folder (default: $AGENTD_HOME, else a cache folder)")
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def resolve_model(args: argparse.Namespace) -> Path:
    """The model a user would get: --model, else what agentd itself would pick."""
    if args.model:
        return Path(args.model)
    if getattr(args, "tiny", False):
        return tiny_qwen35()
    from agent.config.paths import models_dir, resolve_home
    from agent.llm.catalog import find_model
    from agent.config.settings import load_settings

    home = resolve_home(args.home or os.environ.get("AGENTD_HOME") or str(Path(tempfile.gettempdir()) / "agentd-bench-home"))
    settings = load_settings()
    return find_model(settings.model.path, models_dir(home), settings.model.preset).path


def show(result: dict) -> dict:
    """Print a benchmark's figures one per line, names aligned; the figures, for main() to return."""
    width = max(map(len, result), default=0) + 2
    for key, value in result.items():
        print(f"{key:{width}} {value}")
    return result


async def interleaved(first, second, repeats: int) -> tuple[list, list]:
    """Await first() and second() `repeats` times each, alternating which goes first, so drift
    on a busy machine hits both alike; (first's results, second's results)."""
    a, b = [], []
    for i in range(repeats):
        if i % 2 == 0:
            a.append(await first())
            b.append(await second())
        else:
            b.append(await second())
            a.append(await first())
    return a, b


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def synthetic_tool_schemas(count: int) -> list[dict]:
    """Tool schemas of realistic size, made by the real registry from generated functions."""
    from agent.tools import build_tool

    schemas = []
    for i in range(count):
        def func(device: str, level: int = 50, room: str | None = None) -> str:
            return ""

        func.__name__ = f"home_action_{i}"
        func.__doc__ = (
            f"Control home device group {i}: switch it, dim it or read its state.\n\n"
            "Args:\n"
            "    device: The device name as the user says it, e.g. 'kitchen lights'.\n"
            "    level: Brightness or position in percent, 0 to 100.\n"
            "    room: The room, if the user named one.\n"
        )
        schemas.append(build_tool(func).schema)
    return schemas


def tiny_qwen35() -> Path:
    """The tests' tiny Qwen3.5 with the real vocabulary: the only Qwen3.5 a CI machine has.

    agent.testkit builds it (offline, cached under .cache/fixtures), for the tests and here alike.
    """
    from agent.testkit.tiny_qwen import build_tiny_qwen35
    from agent.testkit.train import cached_model

    return cached_model("tiny-qwen35-qwenvocab", "qwen seed=0 layers=4", lambda d: build_tiny_qwen35(d, vocab="qwen"))


def tool_calling_agent(model: str | None):
    """(an Agent whose model must call the tool, its engine, the model's name): the installed
    Qwen3.5 with the core tools, else the tests' tiny Qwen3.5 trained on this very prompt
    (default instructions, core tools, greedy; built once, then cached)."""
    from agent.llm.mlx_engine import MLXEngine
    from agent.testkit.agent_model import make_agent, trained_tool_model

    path = Path(model) if model else trained_tool_model()
    engine = MLXEngine(path)
    return make_agent(engine, max_tokens=64), engine, path.name if model else "trained tiny tool model"
