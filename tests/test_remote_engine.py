"""`model.backend: openai`: the turn on a model served by a real `mlx_lm.server` on 127.0.0.1
(the trained tiny tool model), the same tools and executor, and the server going away."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from agent.daemon.assembly import load_engine
from agent.events import Note, ReplyDone, ToolFinished
from agent.llm.remote_engine import RemoteEngine
from agent.config.settings import load_settings
from agent.store import Store
from agent.testkit.agent_model import make_agent, trained_tool_model

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlxServer:
    """`mlx_lm server` on a model folder, on a free loopback port."""

    def __init__(self, model, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tmp_path / "mlx_server.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--port", str(self.port),
                                      "--temp", "0"], stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-2000:]
                time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def model():
    return trained_tool_model()


@pytest.fixture
def server(model, tmp_path):
    served = MlxServer(model, tmp_path)
    yield served
    served.stop()


def turn(agent, text):
    async def go():
        return [e async for e in agent.respond(text)]

    return asyncio.run(asyncio.wait_for(go(), 120))


def test_a_remote_engine_runs_the_same_turn_as_the_local_one(server, tmp_path):
    store = Store(tmp_path / "agentd.db")
    agent = make_agent(RemoteEngine(server.url))
    agent.store = store
    events = turn(agent, "What is 12 times 7?")
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [(f.name, f.outcome, f.result) for f in finished] == [("calculate", "ok", "12*7 = 84")]
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.stopped_by == "done"
    assert done.text == "12 times 7 is 84."  # the second model call saw the tool's result as the local model does
    assert done.stats.model_calls == 2 and done.stats.prompt_tokens > 0
    assert [(r.tool, r.outcome) for r in store.audit_entries()] == [("calculate", "ok")]
    store.close()


def test_the_server_going_away_mid_turn_ends_the_turn_with_a_clear_note(server):
    class DiesAfterTheToolCall(RemoteEngine):
        calls = 0

        async def stream(self, request, cancel=None):
            self.calls += 1
            if self.calls == 2:
                server.stop()  # the machine with the big model went to sleep
            async for item in super().stream(request, cancel):
                yield item

    events = turn(make_agent(DiesAfterTheToolCall(server.url)), "What is 12 times 7?")
    done = events[-1]
    assert [e.outcome for e in events if isinstance(e, ToolFinished)] == ["ok"]  # the first call's tool still ran
    assert (done.stopped_by, done.reason) == ("error", "engine")
    [note] = [e for e in events if isinstance(e, Note)]
    assert note.text.startswith(f"Stopped: the model server at {server.url} cannot be reached")


def test_an_unreachable_server_and_a_refused_key_are_one_clear_line():
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    done = turn(make_agent(RemoteEngine(nobody, timeout_s=5)), "Hello!")[-1]
    assert (done.stopped_by, done.reason) == ("error", "engine") and "cannot be reached" in done.text


def test_the_settings_choose_the_remote_engine_and_status_says_what_it_cannot_do(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_KEY", "s3cret")
    settings = load_settings(overrides={"model": {"backend": "openai", "remote": {
        "base_url": "http://studio.local:8080/v1/", "model": "qwen3.5-9b", "api_key_env": "STUDIO_KEY"}}})
    engine, note, is_demo = load_engine(settings, tmp_path)
    assert isinstance(engine, RemoteEngine) and not is_demo
    assert engine.base_url == "http://studio.local:8080/v1" and engine._headers == {"Authorization": "Bearer s3cret"}
    assert note == "using qwen3.5-9b at studio.local:8080 (model.backend: openai)"
    assert "constrained tool calls" in engine.status()["not_offered_remotely"]
