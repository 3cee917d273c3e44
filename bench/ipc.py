"""The daemon's own cost: a turn through its socket vs in-process, status round trips, idle CPU and memory.

A real `agentd run` process serves the socket; the in-process turn runs the same model with
the same settings in this process, so both produce the same tokens (greedy sampling).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import interleaved, median, percentile, show

REPO = Path(__file__).resolve().parents[1]
PROMPT = "What is 12 times 7?"  # one tool call and a short answer: a whole agent turn


def test_fixtures():
    """The tests' model fixtures (agent/testkit/agent_model.py), imported when first needed.

    The trained tiny Qwen3.5 is built from prompts recorded through the real Agent (offline,
    cached under .cache/fixtures); agent.testkit holds the builder for the tests and bench/ alike.
    """
    from agent.testkit import agent_model

    return agent_model


def trained_tool_model() -> Path:
    """The tests' tiny Qwen3.5 trained to call tools: the default model here."""
    return test_fixtures().trained_tool_model()


# -- the daemon process ----------------------------------------------------------------------


def start_daemon(home: Path, config: Path, model: Path) -> int:
    """`agentd run` on `home` as a background process, the way `agentd start` does it; its pid."""
    from agent.config.paths import socket_path
    from agent.daemon.process import start_in_background

    command = [sys.executable, str(REPO / "agentd.py"), "run", "--home", str(home), "--config", str(config),
               "--model", str(model)]
    return start_in_background(command, home, socket_path(home))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        fields = stat.read_text().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return parse_cpu_time(ps_field(pid, "time"))  # macOS: no /proc


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    return int(ps_field(pid, "rss")) / 1024


def ps_field(pid: int, field: str) -> str:
    return subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True, check=True).stdout.strip()


def parse_cpu_time(text: str) -> float:
    """Seconds from ps's `[[dd-]hh:]mm:ss[.ff]`."""
    days, _, clock = text.rpartition("-")
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds + (int(days) * 86400 if days else 0)


# -- measurements ----------------------------------------------------------------------------


async def timed_turn(events):
    """Run one turn's step events to its ReplyDone; (seconds, the ReplyDone)."""
    from agent.events import ReplyDone

    start = time.perf_counter()  # the generator starts on the first anext, so this is the start
    async for event in events:
        if isinstance(event, ReplyDone):
            return time.perf_counter() - start, event
    raise RuntimeError("the turn ended without a ReplyDone")


async def socket_turn(client, text: str):
    """One turn through the daemon; (seconds, its ReplyDone)."""
    return await timed_turn(client.reply(text))


async def local_turn(agent, text: str):
    """The same turn in this process; (seconds, its ReplyDone)."""
    return await timed_turn(agent.respond(text))


def same_tokens(a, b) -> bool:
    """Two ReplyDones from the same prompt that read and wrote the same tokens."""
    return (a.text, a.stats.prompt_tokens, a.stats.generated_tokens, a.stats.model_calls) == (
        b.text, b.stats.prompt_tokens, b.stats.generated_tokens, b.stats.model_calls)


async def compare_turns(socket: Path, agent, text: str, repeats: int) -> dict:
    """Median turn time through the socket and in-process, interleaved so drift hits both alike."""
    from agent.ipc import Client

    async with await Client.connect(socket) as client:  # one connection, as a chat window keeps
        await socket_turn(client, text)  # warm up both sides
        await local_turn(agent, text)
        remote, local = await interleaved(lambda: socket_turn(client, text), lambda: local_turn(agent, text), repeats)
    remote_s, local_s = median([t for t, _ in remote]), median([t for t, _ in local])
    return {
        "reply": remote[0][1].text,
        "generated_tokens": remote[0][1].stats.generated_tokens,
        "same_tokens": all(same_tokens(r, l) for (_, r), (_, l) in zip(remote, local)),
        "turn_in_process_s": round(local_s, 4),
        "turn_via_socket_s": round(remote_s, 4),
        "socket_ratio": round(remote_s / local_s, 3),
        "socket_overhead_ms": round((remote_s - local_s) * 1000, 2),  # a fixed cost: short tiny-model turns inflate the ratio
        "socket_ratio_goal": "<= 1.05x",
    }


async def status_round_trips(socket: Path, count: int) -> dict:
    """p50/p99 of `status` requests on one open connection."""
    from agent.ipc import Client

    times = []
    async with await Client.connect(socket) as client:
        await client.status()
        for _ in range(count):
            start = time.perf_counter()
            await client.status()
            times.append(time.perf_counter() - start)
    return {
        "status_requests": count,
        "status_p50_ms": round(percentile(times, 50) * 1000, 3),
        "status_p99_ms": round(percentile(times, 99) * 1000, 3),
    }


def idle_usage(pid: int, seconds: float) -> dict:
    """The daemon's CPU (percent of one core) over an idle window, and its resident memory."""
    time.sleep(1.0)  # let the last turn's clean-up and the clients' goodbyes settle
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return {
        "idle_window_s": round(t1 - t0, 1),
        "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "idle_cpu_goal": "<= 1%",
        "rss_mb": round(rss_mb(pid), 1),
        "rss_goal": "<= 200 MB (tiny model)",
    }


def run(model: Path, *, repeats: int = 15, status_requests: int = 200, idle_seconds: float = 60,
        prompt: str = PROMPT) -> dict:
    """Start a daemon, measure it against an in-process agent, stop it."""
    from agent.daemon.assembly import build_app
    from agent.daemon.process import stop_daemon
    from agent.config.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="ad-bench-", dir="/tmp"))  # short: AF_UNIX paths
    local_home = home / "in-process"
    config = home / "greedy.yaml"
    config.write_text(test_fixtures().GREEDY_CONFIG)
    app = None
    try:
        pid = start_daemon(home, config, model)
        local_home.mkdir(mode=0o700)
        app = build_app(load_settings(config, overrides={"model.path": str(model)}), local_home)
        app.warm_up()
        socket = home / "agentd.sock"
        result = {"model": model.name, "daemon_pid": pid}
        result |= asyncio.run(compare_turns(socket, app.agent, prompt, repeats))
        result |= asyncio.run(status_round_trips(socket, status_requests))
        app.close()
        app = None  # free this process's copy before the daemon's idle window
        result |= idle_usage(pid, idle_seconds)
        return result
    finally:
        if app is not None:
            app.close()
        stop_daemon(home)
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="MLX model folder (default: the tests' tiny Qwen3.5 trained to call tools)")
    parser.add_argument("--repeats", type=int, default=15, help="turns of each kind (medians are reported)")
    parser.add_argument("--status-requests", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60, help="window for the idle CPU figure")
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else trained_tool_model()
    result = run(model, repeats=args.repeats, status_requests=args.status_requests,
                 idle_seconds=args.idle_seconds, prompt=args.prompt)
    return show(result)


if __name__ == "__main__":
    main()
