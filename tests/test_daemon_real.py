"""A real `agentd run` process with the trained tiny Qwen3.5, driven over its real socket and CLI.

One daemon serves the whole module (the restart tests come last and leave one running).
The model answers its scripted prompts exactly only in a fresh conversation with greedy
sampling: every `send` without a conversation id starts a fresh one, and daemon_proc's
config turns sampling and skills off.
"""

import asyncio
import json
import re
import shutil
import sys
import time

import pexpect
import pytest

from agent.daemon.assembly import core_registry
from agent.events import ReplyDone, TextDelta, ToolStarted
from agent.ipc import Client, Started, parse_event, status_sync
from agent.ipc.protocol import VERSION, Cancel, Send, encode
from agent.store import Store
from daemon_proc import REPO, AGENTD, RealDaemon, agentd, child_env, greedy_config, short_home
from agent.testkit.agent_model import trained_tool_model

pytestmark = pytest.mark.slow

MATH, MATH_REPLY = "What is 12 times 7?", "12 times 7 is 84."
HELLO, HELLO_REPLY = "Hello!", "Hello! How can I help?"


@pytest.fixture(scope="module")
def daemon():
    """One real daemon for the module, on a short private home."""
    model = trained_tool_model()  # first: a failure here must not leave a home folder behind
    home = short_home()
    real = RealDaemon(home, greedy_config(home), model)
    try:
        status = real.start()
        # the model repeats its lines only for the prompt it was trained on: the core tools alone
        assert status["tools"] == core_registry().names(), "the daemon offers other tools than the model learned"
        yield real
    finally:
        real.close()
        shutil.rmtree(home, ignore_errors=True)


def run(coro, timeout=30):
    """Run a test's client code with a time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(client, text):
    """Every event of one reply."""
    return [event async for event in client.reply(text)]


# -- the CLI -------------------------------------------------------------------------------


def test_ask_prints_the_reply_and_the_tool_call(daemon):
    done = agentd("ask", "--home", str(daemon.home), MATH)
    assert done.returncode == 0, done.stderr
    assert done.stdout == MATH_REPLY + "\n"
    assert "[calculate -> 12*7 = 84]" in done.stderr
    assert re.search(r"\(prefilled \d+\+\d+ tokens, reused \d+\+\d+\)", done.stderr)  # per model call


def test_ask_json_prints_the_step_events(daemon):
    done = agentd("ask", "--home", str(daemon.home), "--json", MATH)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    started = [e for e in events if e["type"] == "ToolStarted"]
    assert [(e["name"], e["arguments"]) for e in started] == [("calculate", {"expression": "12*7"})]
    finished = next(e for e in events if e["type"] == "ToolFinished")
    assert finished["ok"] and finished["result"] == "12*7 = 84"
    assert "".join(e["text"] for e in events if e["type"] == "TextDelta") == MATH_REPLY
    assert events[-1]["type"] == "ReplyDone" and events[-1]["text"] == MATH_REPLY
    stats = events[-1]["stats"]
    assert stats["model_calls"] == 2 and stats["prefix_hit"]
    # per model call, through the socket: the second reads only the tool's result, reusing the rest
    (prefilled_1, reused_1), (prefilled_2, reused_2) = stats["per_call"]
    assert reused_2 > prefilled_1 + reused_1 and prefilled_2 < 40, stats["per_call"]
    assert prefilled_1 + prefilled_2 == stats["prompt_tokens"] - stats["prefix_tokens_reused"]


def test_status_shows_the_model_and_the_prefix_cache(daemon):
    agentd("ask", "--home", str(daemon.home), HELLO)  # at least one turn on the cache
    done = agentd("status", "--home", str(daemon.home))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["model"] == daemon.model.name
    assert lines["pid"] == str(daemon.pid)
    cache = json.loads(lines["prefix_cache"])
    assert cache["builds"] >= 1 and cache["hits"] >= 1 and cache["tokens_reused"] > 0
    conversations = json.loads(lines["conversation_cache"])  # each `ask` is a new conversation: kept, not hit
    assert lines["backend"] == "mlx" and conversations["conversations"] >= 1 and conversations["misses"] >= 1
    # its size in bytes and MB within its budget (the default), and how often a call found its cache
    assert 0 < conversations["bytes"] <= conversations["budget_mb"] * 2**20 and conversations["budget_mb"] == 512
    assert conversations["size_mb"] == round(conversations["bytes"] / 2**20, 2) and 0 <= conversations["hit_rate"] <= 1
    assert lines["offline"] == "True"  # measured by agent.daemon.netguard: no connection left the machine


def test_the_daemon_logs_each_line_once(daemon):
    assert daemon.output().count("agentd ready") == 1  # not once per handler


def test_ask_without_a_daemon_says_how_to_start_one():
    home = short_home()
    try:
        done = agentd("ask", "--home", str(home), MATH)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode != 0
    assert "not running" in done.stderr and "agentd start" in done.stderr
    assert "Traceback" not in done.stderr


def test_chat_in_a_terminal(daemon):
    env = {**child_env(), "TERM": "xterm"}
    chat = pexpect.spawn(sys.executable, [str(AGENTD), "chat", "--home", str(daemon.home)], cwd=str(REPO),
                         env=env, encoding="utf-8", timeout=20, dimensions=(40, 100))
    try:
        chat.expect(daemon.model.name)  # the status line names the daemon's model
        chat.expect("you ›")
        chat.sendline(MATH)
        chat.expect("calculate")
        chat.expect("is 84")
        chat.expect("you ›")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0
    finally:
        chat.close(force=True)


# -- the socket ----------------------------------------------------------------------------


def test_concurrent_clients_each_get_their_own_reply(daemon):
    async def go():
        first, second = await Client.connect(daemon.socket), await Client.connect(daemon.socket)
        async with first, second:
            return await asyncio.gather(collect(first, MATH), collect(second, HELLO))

    math, hello = run(go())
    assert math[-1].text == MATH_REPLY and math[-1].stopped_by == "done"
    assert [e.name for e in math if isinstance(e, ToolStarted)] == ["calculate"]
    assert hello[-1].text == HELLO_REPLY and hello[-1].stopped_by == "done"
    assert not any(isinstance(e, ToolStarted) for e in hello)
    # each client saw its own request only: every streamed piece belongs to its reply
    assert "".join(e.text for e in hello if isinstance(e, TextDelta)) == HELLO_REPLY


def test_cancelling_a_turn_queued_behind_a_running_one(daemon):
    # The tiny model finishes a turn in tens of milliseconds, too quick to cancel mid-reply
    # reliably; a turn queued behind it is cancelled for sure when the three frames arrive
    # in one write (the daemon handles them in order without yielding between queue and cancel).
    async def go():
        reader, writer = await asyncio.open_unix_connection(str(daemon.socket))
        frames = [Send(v=VERSION, type="send", id="a", text=MATH), Send(v=VERSION, type="send", id="b", text=HELLO),
                  Cancel(v=VERSION, type="cancel", id="b")]
        writer.write(b"".join(encode(frame) for frame in frames))
        events: dict[str, list] = {"a": [], "b": []}
        while not all(e and isinstance(e[-1], ReplyDone) for e in events.values()):
            rid, event = parse_event(await reader.readline())
            events[rid].append(event)
        writer.close()
        return events

    events = run(go())
    assert len(events["b"]) == 1  # no Started: it never ran
    assert events["b"][0].stopped_by == "cancelled" and events["b"][0].text == ""
    assert isinstance(events["a"][0], Started)
    assert events["a"][-1].text == MATH_REPLY and events["a"][-1].stopped_by == "done"


def test_the_audit_log_holds_the_tool_call(daemon):
    agentd("ask", "--home", str(daemon.home), MATH)
    with Store(daemon.home / "agentd.db") as store:
        entry = store.audit_entries(limit=1, tool="calculate")[0]
    assert entry.arguments == {"expression": "12*7"}
    assert entry.outcome == "ok" and entry.risk == "read" and entry.who == "chat"
    assert entry.conversation_id


def test_the_model_sets_a_reminder_that_the_schedule_keeps(daemon):
    """The trained model calls set_reminder in a real turn; the job lands in jobs.db."""
    agentd("ask", "--home", str(daemon.home), "Remind me in 20 minutes to water the plants.", timeout=120)
    with Store(daemon.home / "agentd.db") as store:
        # The first call: the model was trained on a fixed clock's result ("set for 12:20"), so
        # with today's time in the result it may call again before it answers.
        entry = store.audit_entries(limit=10, tool="set_reminder")[-1]
    assert entry.arguments == {"text": "water the plants", "at": "in 20 minutes"} and entry.outcome == "ok", entry
    jobs = agentd("jobs", *daemon.options)
    assert jobs.returncode == 0, jobs.stderr
    line = next(line for line in jobs.stdout.splitlines() if "water the plants" in line)
    assert "reminder" in line


# -- life cycle (last: these restart the module's daemon) ----------------------------------


def test_a_restart_keeps_the_history(daemon):
    async def ask_math():
        async with await Client.connect(daemon.socket) as client:
            events = await collect(client, MATH)
        return next(e.conversation_id for e in events if isinstance(e, Started)), events[-1]

    conversation_id, reply = run(ask_math())
    assert reply.text == MATH_REPLY
    old_pid = daemon.pid

    stopped = agentd("stop", "--home", str(daemon.home))
    assert f"(pid {old_pid}) stopped" in stopped.stdout
    daemon.wait_until_gone()
    assert not daemon.socket.exists()
    started = agentd("start", *daemon.options)
    assert started.returncode == 0 and "agentd started" in started.stdout, started.stderr
    status = daemon.wait_until_up()
    assert daemon.pid != old_pid
    # warm at once: the prefix the first daemon built was saved in the home and loaded here
    deadline = time.monotonic() + 30
    while status["warm_up"]["phase"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
        status = status_sync(daemon.socket)
    assert status["warm_up"]["text"] == "model ready (prefix loaded from the home folder)"
    assert (status["prefix_cache"]["loads"], status["prefix_cache"]["builds"]) == (1, 0)
    assert "warm_up        model ready (prefix loaded from the home folder)" in agentd("status", "--home", str(daemon.home)).stdout

    async def history():
        async with await Client.connect(daemon.socket) as client:
            return await client.history(conversation_id)

    messages = run(history()).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[0]["content"] == MATH
    assert messages[1]["tool_calls"][0]["function"]["name"] == "calculate"
    assert messages[2]["content"] == "12*7 = 84"
    assert messages[-1]["content"] == MATH_REPLY


def test_kill_9_then_start_again(daemon):
    daemon.kill()  # SIGKILL: no clean-up, the socket file stays behind
    assert daemon.socket.is_socket()
    status = daemon.start()
    assert status["model"] == daemon.model.name
    done = agentd("ask", "--home", str(daemon.home), MATH)
    assert done.returncode == 0 and done.stdout == MATH_REPLY + "\n", done.stderr
