"""MCP servers as tool sources, against real servers: `mcp-server-time` and `mcp-server-git`
from PyPI, and a server the tests write (tests/mcp_servers/gremlin.py) that answers, fails,
hangs and dies. Every call goes through the executor, as every tool call does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.actions import Action, Executor
from agent.mcp.config import McpServerSettings
from agent.mcp.hub import McpHub
from agent.config.settings import ConfigError, load_settings
from agent.store import Store
from agent.tools import ToolRegistry
from agent.turn import Agent
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

GREMLIN = Path(__file__).parent / "mcp_servers" / "gremlin.py"


def server(*args: str, **options) -> McpServerSettings:
    return McpServerSettings(command=sys.executable, args=list(args), **{"start_timeout_s": 15.0, **options})


@contextlib.asynccontextmanager
async def hub_of(servers: dict, **options):
    """A hub serving `servers` until the block ends, once none is still starting."""
    hub = McpHub(servers, retry_min_s=options.pop("retry_min_s", 0.2), **options)
    task = asyncio.create_task(hub.serve())
    try:
        await hub.wait_up(30)
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "agentd.db")
    yield store
    store.close()


def test_the_time_server_tools_run_through_the_executor(store):
    async def go():
        async with hub_of({"time": server("-m", "mcp_server_time", "--local-timezone", "UTC", risk="read")}) as hub:
            assert hub.status()["mcp_servers"]["time"]["state"] == "up"
            registry = ToolRegistry(hub.tools())
            assert registry.names() == ["mcp_time_get_current_time", "mcp_time_convert_time"]
            schema = registry.get("mcp_time_get_current_time").parameters
            assert schema["required"] == ["timezone"] and "title" not in schema["properties"]["timezone"]
            executor = Executor(registry, store=store)
            paris = await executor.run(Action(tool="mcp_time_get_current_time", arguments={"timezone": "Europe/Paris"}))
            nowhere = await executor.run(Action(tool="mcp_time_get_current_time", arguments={"timezone": "Nowhere/Land"}))
            missing = await executor.run(Action(tool="mcp_time_get_current_time", arguments={}))
            return paris, nowhere, missing

    paris, nowhere, missing = asyncio.run(go())
    assert paris.status == "ok" and json.loads(paris.result)["timezone"] == "Europe/Paris"
    assert nowhere.status == "error" and "Nowhere/Land" in nowhere.result  # isError reaches the model
    assert missing.status == "invalid" and "'timezone' is a required property" in missing.result
    assert [(r.tool, r.outcome) for r in reversed(store.audit_entries())] == [
        ("mcp_time_get_current_time", "ok"), ("mcp_time_get_current_time", "error"), ("mcp_time_get_current_time", "invalid")]


def test_the_git_server_reads_a_scratch_repository(tmp_path, store):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "water the plants"], check=True)

    async def go():
        config = server("-m", "mcp_server_git", "--repository", str(repo), tools={"include": ["git_log", "git_status"]}, risk="read")
        async with hub_of({"git": config}) as hub:
            registry = ToolRegistry(hub.tools())
            outcome = await Executor(registry, store=store).run(Action(tool="mcp_git_git_log", arguments={"repo_path": str(repo)}))
            return registry.names(), outcome

    names, outcome = asyncio.run(go())
    assert names == ["mcp_git_git_status", "mcp_git_git_log"]  # the include list, in the server's order
    assert outcome.status == "ok" and "water the plants" in outcome.result


def test_a_server_the_person_did_not_vouch_for_needs_a_yes(store):
    async def go():
        async with hub_of({"g": server(str(GREMLIN), tool_risk={"refuse": "write"})}) as hub:
            executor = Executor(ToolRegistry(hub.tools()), store=store)
            unasked = await executor.run(Action(tool="mcp_g_echo", arguments={"text": "hi"}))

            async def yes(tool, arguments):
                return True

            asked = await executor.run(Action(tool="mcp_g_echo", arguments={"text": "hi", "times": 2}), approve=yes)
            refused = await executor.run(Action(tool="mcp_g_refuse", arguments={"reason": "no"}))
            return unasked, asked, refused, {t.name: t.risk for t in hub.tools()}

    unasked, asked, refused, risks = asyncio.run(go())
    assert risks["mcp_g_echo"] == "confirm" and risks["mcp_g_refuse"] == "write"
    assert (unasked.status, asked.status, asked.result) == ("denied", "ok", "hi hi")
    assert refused.status == "error" and "refused: no" in refused.result


def test_a_hanging_tool_times_out_and_a_dying_server_comes_back(tmp_path, store):
    starts = tmp_path / "starts"

    async def go():
        config = server(str(GREMLIN), risk="read", timeout_s=0.5, env={"GREMLIN_STARTS": str(starts)})
        async with hub_of({"g": config}) as hub:
            changes = []
            hub.on_change = lambda: changes.append([t.name for t in hub.tools()])
            executor = Executor(ToolRegistry(hub.tools()), store=store)
            hung = await executor.run(Action(tool="mcp_g_hang"))
            still = await executor.run(Action(tool="mcp_g_echo", arguments={"text": "still here"}))
            died = await executor.run(Action(tool="mcp_g_die"))
            link = hub.links["g"]
            await until(lambda: link.connects == 2 and link.state == "up")
            again = await Executor(ToolRegistry(hub.tools()), store=store).run(Action(tool="mcp_g_echo", arguments={"text": "back"}))
            return hung, still, died, again, list(changes)  # (leaving the hub takes its tools away)

    hung, still, died, again, changes = asyncio.run(go())
    assert hung.status == "timeout" and "0.5 s" in hung.result
    assert (still.status, still.result) == ("ok", "still here")  # a timeout does not end the session
    assert died.status == "error" and "MCP server g failed" in died.result
    assert (again.status, again.result) == ("ok", "back")
    assert changes[0] == [] and changes[-1] == ["mcp_g_echo", "mcp_g_refuse", "mcp_g_hang", "mcp_g_die"]
    assert starts.read_text().count("start") == 2


def test_a_server_that_never_answers_is_down_with_the_reason_and_retried():
    async def go():
        silent = McpServerSettings(command=sys.executable, args=["-c", "import time; time.sleep(60)"], start_timeout_s=0.5)
        broken = McpServerSettings(command="/nonexistent/mcp-server")
        async with hub_of({"silent": silent, "broken": broken, "g": server(str(GREMLIN))}) as hub:
            await until(lambda: hub.links["silent"].state == "down")
            return hub.status()["mcp_servers"], [t.name for t in hub.tools()]

    status, tools = asyncio.run(go())
    assert status["silent"]["state"] == "down" and status["silent"]["error"] == "no answer in time"
    assert "retry_in_s" in status["silent"]
    assert status["broken"]["state"] == "down" and "nonexistent" in status["broken"]["error"]
    assert status["g"]["state"] == "up"  # the others are not held up
    assert tools == ["mcp_g_echo", "mcp_g_refuse", "mcp_g_hang", "mcp_g_die"]


def test_a_streamable_http_server(store):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(GREMLIN), "http", str(port)], stderr=subprocess.DEVNULL)
    try:
        async def go():
            config = McpServerSettings(url=f"http://127.0.0.1:{port}/mcp", risk="read", start_timeout_s=15.0)
            hub = McpHub({"web": config}, retry_min_s=0.2)
            task = asyncio.create_task(hub.serve())
            try:
                await until(lambda: hub.links["web"].state == "up")
                return await Executor(ToolRegistry(hub.tools()), store=store).run(Action(tool="mcp_web_echo", arguments={"text": "over http"}))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        outcome = asyncio.run(go())
        assert (outcome.status, outcome.result) == ("ok", "over http")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_model_turn_calls_an_mcp_tool_like_any_other(store):
    async def go():
        async with hub_of({"g": server(str(GREMLIN), risk="read")}) as hub:
            llm = ScriptedLLM([xml_call("mcp_g_echo", text="hello", times=2), "It said hello twice."])
            agent = Agent(llm=llm, registry=ToolRegistry(hub.tools()), system_prompt="test", store=store)
            events = [e async for e in agent.respond("echo hello twice")]
            return events, llm.requests[0].tools

    events, tools_seen = asyncio.run(go())
    assert "mcp_g_echo" in [t["function"]["name"] for t in tools_seen]
    finished = next(e for e in events if type(e).__name__ == "ToolFinished")
    assert (finished.name, finished.outcome, finished.result) == ("mcp_g_echo", "ok", "hello hello")
    assert events[-1].text == "It said hello twice."


def test_the_config_names_what_is_wrong():
    with pytest.raises(ConfigError, match="either `command`"):
        load_settings(overrides={"mcp_servers": {"x": {"command": "a", "url": "http://h"}}})
    with pytest.raises(ConfigError, match="MCP server name 'My Server'"):
        load_settings(overrides={"mcp_servers": {"My Server": {"command": "a"}}})
    with pytest.raises(ConfigError, match="risk"):
        load_settings(overrides={"mcp_servers": {"x": {"command": "a", "risk": "sometimes"}}})
    assert load_settings().mcp_servers == {}


@pytest.mark.slow
def test_a_real_daemon_starts_its_mcp_servers_and_shows_them_in_status(tiny_qwen_bpe):
    from agent.ipc import status_sync
    from daemon_proc import RealDaemon, short_home

    home = short_home()
    config = home / "config.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "mcp_servers": {"g": {"command": sys.executable, "args": [str(GREMLIN)], "risk": "read"},
                        "gone": {"command": "/nonexistent/mcp-server"}},
    }))
    daemon = RealDaemon(home, config, tiny_qwen_bpe)
    try:
        first = daemon.start()  # answers at once: the servers do not hold the daemon up
        assert set(first["mcp_servers"]) == {"g", "gone"}
        deadline = time.monotonic() + 30
        while (status := status_sync(daemon.socket))["mcp_servers"]["g"]["state"] != "up":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert "mcp_g_echo" in status["tools"] and status["mcp_servers"]["gone"]["state"] == "down"
        assert (home / "logs" / "mcp-g.log").exists()  # the server's own stderr, kept apart
    finally:
        daemon.close()


def test_doctor_starts_each_server_once_and_names_the_broken_one(tmp_path):
    from agent.cli.doctor import check_mcp

    settings = load_settings(overrides={"mcp_servers": {
        "g": {"command": sys.executable, "args": [str(GREMLIN)]},
        "gone": {"command": "/nonexistent/mcp-server", "start_timeout_s": 2.0}}})
    check = check_mcp({"settings": settings, "home": tmp_path})
    assert check.ok is False and check.detail.startswith("g up (4 tools); gone down: ")
    assert "nonexistent" in check.detail and "mcp_servers" in check.fix
    assert check_mcp({"settings": load_settings()}).ok is True
