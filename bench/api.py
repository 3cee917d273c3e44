"""The HTTP API's added latency: the same turn through /v1/chat/completions (SSE) vs the Unix socket.

One real `agentd run` process with the API on serves both, so both turns run the same model,
prompt and tokens (greedy sampling, a fresh conversation each); only the door differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket as sockets
import tempfile
import time
from pathlib import Path

from bench.common import interleaved, median, show
from bench.ipc import PROMPT, socket_turn, start_daemon, test_fixtures, trained_tool_model


async def api_turn(http, text: str) -> tuple[float, dict]:
    """One streamed chat completion to its `[DONE]`; (seconds, {"text", "prompt_tokens", "generated_tokens"})."""
    body = {"model": "agentd", "messages": [{"role": "user", "content": text}], "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    pieces, usage = [], {}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            pieces += [c["delta"].get("content") or "" for c in chunk["choices"]]
    elapsed = time.perf_counter() - start
    return elapsed, {"text": "".join(pieces).strip(), "prompt_tokens": usage.get("prompt_tokens"),
                     "generated_tokens": usage.get("completion_tokens")}


def same_tokens(api: dict, done) -> bool:
    """The API's reply read and wrote what the socket's ReplyDone did."""
    return (api["text"], api["prompt_tokens"], api["generated_tokens"]) == (
        done.text, done.stats.prompt_tokens, done.stats.generated_tokens)


async def compare(socket: Path, url: str, token: str, text: str, repeats: int) -> dict:
    """Median turn time through the API and through the socket, interleaved so drift hits both alike."""
    import httpx

    from agent.ipc import Client

    headers = {"Authorization": f"Bearer {token}"}
    async with await Client.connect(socket) as client, httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        await socket_turn(client, text)  # warm up both doors
        await api_turn(http, text)
        via_api, via_socket = await interleaved(lambda: api_turn(http, text), lambda: socket_turn(client, text), repeats)
    socket_s = median([t for t, _ in via_socket])
    # The median of the paired differences: each pair ran back to back, so a load spike on this
    # shared machine lands in one pair, not in the estimate.
    added_s = median([a - s for (a, _), (s, _) in zip(via_api, via_socket)])
    api_s = socket_s + added_s
    return {
        "reply": via_socket[0][1].text,
        "generated_tokens": via_socket[0][1].stats.generated_tokens,
        "same_tokens": all(same_tokens(a, s) for (_, a), (_, s) in zip(via_api, via_socket)),
        "turn_via_socket_s": round(socket_s, 4),
        "turn_via_api_s": round(api_s, 4),
        "api_ratio": round(api_s / socket_s, 3),
        "api_overhead_ms": round(added_s * 1000, 2),
        "api_ratio_goal": "<= 1.05x",
    }


def run(model: Path, *, repeats: int = 15, prompt: str = PROMPT) -> dict:
    """Start a daemon with the API on a free port, measure both doors, stop it."""
    from agent.daemon.process import stop_daemon

    home = Path(tempfile.mkdtemp(prefix="ad-bench-", dir="/tmp"))  # short: AF_UNIX paths
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = home / "api.yaml"
    config.write_text(test_fixtures().GREEDY_CONFIG + f"api:\n  enabled: true\n  port: {port}\n")
    try:
        pid = start_daemon(home, config, model)
        token = (home / "api-token").read_text().strip()
        result = {"model": model.name, "daemon_pid": pid}
        return result | asyncio.run(compare(home / "agentd.sock", f"http://127.0.0.1:{port}", token, prompt, repeats))
    finally:
        stop_daemon(home)
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="MLX model folder (default: the tests' tiny Qwen3.5 trained to call tools)")
    parser.add_argument("--repeats", type=int, default=15, help="turns through each door (medians are reported)")
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else trained_tool_model()
    return show(run(model, repeats=args.repeats, prompt=args.prompt))


if __name__ == "__main__":
    main()
