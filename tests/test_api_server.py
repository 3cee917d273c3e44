"""The API's HTTP server inside a daemon built around the scripted FakeAgent: queueing,
warm-up, cancellation on disconnect, errors, the allow list and the token file (fast; the
real clients on a real model are in test_api.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import httpx
import pytest

from agent.api.server import ApiBindError, ApiServer
from agent.ipc import Client
from agent.config.settings import default_settings
from fakes import FakeAgent, collect, home, make, run, running, until  # noqa: F401  (home is a fixture)
from test_api import free_port


def api_settings(**changes):
    return default_settings().api.model_copy(update={"enabled": True, "port": free_port(), **changes})


@contextlib.asynccontextmanager
async def serving(home, agent, *, ready=lambda: True, **changes):
    """A daemon with the API service on a free port; (daemon, httpx client with the token)."""
    daemon = make(home, agent)
    api = ApiServer(daemon, api_settings(**changes), home, ready=ready)
    daemon.add_service("api", api.serve)
    async with running(daemon):
        await until(lambda: api.port is not None)
        token = (home / "api-token").read_text().strip()
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            yield daemon, http


def user(text: str) -> dict:
    return {"model": "agentd", "messages": [{"role": "user", "content": text}]}


def test_an_api_turn_waits_in_the_turn_queue_like_any_other(home):
    agent = FakeAgent()

    async def go():
        async with serving(home, agent) as (daemon, http):
            async with await Client.connect(daemon.socket_path) as chat:
                held = asyncio.create_task(collect(chat, "hold"))
                await until(lambda: daemon.turns.current is not None)
                request = asyncio.create_task(http.post("/v1/chat/completions", json=user("from an app")))
                await until(lambda: daemon.turns.waiting() == 1)
                assert daemon.status()["busy"]["who"] == "chat"
                agent.release.set()
                await held
                return (await request).json()

    reply = run(go())
    assert reply["choices"][0]["message"]["content"] == "from an app"
    assert [(c["text"], c["who"]) for c in agent.calls] == [("hold", "chat"), ("from an app", "api")]
    assert agent.max_active == 1
    assert reply["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def test_while_the_model_warms_up_chat_requests_get_a_503(home):
    async def go():
        async with serving(home, FakeAgent(), ready=lambda: False) as (_, http):
            return (await http.post("/v1/chat/completions", json=user("hi")),
                    await http.post("/api/chat", json=user("hi")), await http.get("/api/tags"))

    openai_reply, ollama_reply, tags = run(go())
    assert openai_reply.status_code == 503 and "warming up" in openai_reply.json()["error"]["message"]
    assert ollama_reply.status_code == 503 and "warming up" in ollama_reply.json()["error"]
    assert tags.status_code == 200  # listing the model needs no warm model


def test_a_client_that_hangs_up_stops_its_turn(home):
    agent = FakeAgent(delay=0.05)

    async def go():
        async with serving(home, agent) as (daemon, http):
            async with http.stream("POST", "/api/chat", json={**user("slow 400"), "stream": True}) as response:
                async for line in response.aiter_lines():
                    assert json.loads(line)["message"]["content"] == "tick0 "
                    break
            await until(lambda: not daemon.turns.requests and agent.active == 0, timeout=5)  # not the 20 s it would take

    run(go())


def test_a_failed_turn_is_an_error_the_client_reads(home):
    async def go():
        async with serving(home, FakeAgent()) as (_, http):
            whole = await http.post("/v1/chat/completions", json=user("boom"))
            streamed = await http.post("/api/chat", json={**user("boom"), "stream": True})
            return whole, streamed

    whole, streamed = run(go())
    assert whole.status_code == 500 and "RuntimeError: boom" in whole.json()["error"]["message"]
    assert "RuntimeError: boom" in json.loads(streamed.text.splitlines()[-1])["error"]


def test_bad_requests_say_what_is_wrong(home):
    async def go():
        async with serving(home, FakeAgent()) as (_, http):
            return (await http.post("/v1/chat/completions", content=b"{not json"),
                    await http.post("/v1/chat/completions", json={"model": "agentd"}),
                    await http.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]}),
                    await http.post("/api/chat", json={"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]}),
                    await http.post("/api/chat", json={"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                    await http.get("/v1/nothing"))

    not_json, no_messages, not_user, no_text, no_url, missing = run(go())
    assert no_text.status_code == 400 and no_text.json() == {"error": "the last user message has no text to answer"}
    assert no_url.status_code == 400 and "an image_url must be a data: URL" in no_url.json()["error"]
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]["message"]
    assert no_messages.status_code == 400 and "messages: Field required" in no_messages.json()["error"]["message"]
    assert not_user.status_code == 400 and "last message must be the user's" in not_user.json()["error"]["message"]
    assert missing.status_code == 404 and "/v1/nothing" in missing.json()["error"]["message"]


def test_confirm_tier_tools_are_denied_unless_allowed(home):
    agent = FakeAgent()

    async def go():
        async with serving(home, agent) as (_, http):
            denied = await http.post("/v1/chat/completions", json=user("unlock front"))
        async with serving(home, agent, allow=["unlock_door"]) as (_, http):
            allowed = await http.post("/v1/chat/completions", json=user("unlock front"))
        return denied.json(), allowed.json()

    denied, allowed = run(go())
    assert agent.confirmed == [False, True]
    assert denied["choices"][0]["message"]["content"] == "I did not unlock it."
    assert allowed["choices"][0]["message"]["content"] == "Unlocked."


def test_the_token_is_made_once_private_and_kept(home):
    ApiServer(make(home), api_settings(), home)
    token_file = home / "api-token"
    first = token_file.read_text()
    assert token_file.stat().st_mode & 0o777 == 0o600 and len(first.strip()) >= 32
    ApiServer(make(home), api_settings(), home)
    assert token_file.read_text() == first


def test_thinking_reaches_each_protocol_in_its_own_field(home):
    async def go():
        async with serving(home, FakeAgent()) as (_, http):
            whole = await http.post("/v1/chat/completions", json=user("think"))
            streamed = await http.post("/api/chat", json={**user("think"), "stream": True, "think": True})
            return whole.json(), [json.loads(line) for line in streamed.text.splitlines()]

    whole, lines = run(go())
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think about this." and message["content"] == "Thought it through."
    assert "".join(line["message"].get("thinking", "") for line in lines) == "Let me think about this."
    assert "".join(line["message"]["content"] for line in lines) == "Thought it through."


def test_a_port_in_use_is_named_in_the_error(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = ApiServer(make(home), api_settings(port=port), home)
        with pytest.raises(ApiBindError, match=f"cannot listen on 127.0.0.1:{port}.*api.port"):
            asyncio.run(api.serve())


def test_a_body_over_max_request_bytes_gets_a_413_in_each_apis_shape(home):
    """Content-Length over the limit is refused unread; a chunked body without one is cut off
    once it passes the limit; the same connection serves the next request."""
    agent = FakeAgent()
    limit = 2000
    big = json.dumps(user("x" * 3000)).encode()

    async def chunks(body: bytes, sent: list):
        for at in range(0, len(body), 500):
            sent.append(at)
            yield body[at : at + 500]

    async def go():
        async with serving(home, agent, max_request_bytes=limit) as (_, http):
            declared_openai = await http.post("/v1/chat/completions", content=big)
            declared_ollama = await http.post("/api/chat", content=big)
            chunked = await http.post("/v1/chat/completions", content=chunks(big, []))
            chunked_ollama = await http.post("/api/chat", content=chunks(big, []))
            small_chunked = await http.post("/v1/chat/completions", content=chunks(json.dumps(user("fits")).encode(), []))
            after = await http.post("/v1/chat/completions", json=user("still served"))
            return declared_openai, declared_ollama, chunked, chunked_ollama, small_chunked, after

    declared_openai, declared_ollama, chunked, chunked_ollama, small_chunked, after = run(go())
    assert "content-length" in declared_openai.request.headers
    assert "content-length" not in chunked.request.headers and chunked.request.headers["transfer-encoding"] == "chunked"
    for reply in (declared_openai, chunked):
        assert reply.status_code == 413, reply.text
        error = reply.json()["error"]
        assert error["type"] == "request_too_large" and error["code"] == 413
        assert "api.max_request_bytes: 2000 bytes" in error["message"]
    assert f"({len(big)} bytes)" in declared_openai.json()["error"]["message"]  # Content-Length: named before reading
    for reply in (declared_ollama, chunked_ollama):
        assert reply.status_code == 413 and list(reply.json()) == ["error"]
        assert "larger than the API takes (api.max_request_bytes: 2000 bytes)" in reply.json()["error"]
    assert small_chunked.status_code == 200 and small_chunked.json()["choices"][0]["message"]["content"] == "fits"
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == "still served"
    assert [c["text"] for c in agent.calls] == ["fits", "still served"]  # the big ones never reached a turn


def test_max_request_bytes_must_hold_one_picture():
    from agent.config.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match=r"api.max_request_bytes \(1000\) is smaller than one picture of "
                                          r"vision.max_image_bytes \(20000000\).*raise api.max_request_bytes"):
        load_settings(overrides={"api": {"max_request_bytes": 1000}})
    assert load_settings(overrides={"api": {"max_request_bytes": 1000}, "vision": {"max_image_bytes": 600}})


def test_a_chunked_body_is_read_only_up_to_the_limit(home):
    """The app stops pulling a body without Content-Length at the chunk that passes the limit
    (httpx's ASGI transport hands the app one chunk per receive, so the pulls can be counted)."""
    api = ApiServer(make(home, FakeAgent()), api_settings(max_request_bytes=2000), home)
    token = (home / "api-token").read_text().strip()
    pulled = []

    async def chunks():
        for at in range(10):
            pulled.append(at)
            yield b"x" * 500

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://agentd",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            return await http.post("/api/chat", content=chunks())

    reply = run(go())
    assert reply.status_code == 413 and "api.max_request_bytes: 2000 bytes" in reply.json()["error"]
    assert len(pulled) == 5  # 2,500 bytes: past the limit, and nothing after it was asked for
