"""The daemon with a scripted agent: queueing, cancel, confirmation, status and hooks."""

import asyncio
import json
import os
import time

import pytest

from agent.daemon.confirm import ConfirmDecision
from agent.daemon.core import store_hooks
from agent.events import Note, ReplyDone, TextDelta, ToolFinished
from agent.ipc import Client, ConfirmRequest, RequestFailed, Started, ask
from fakes import FakeAgent, collect, drain, home, make, run, running, until  # noqa: F401  (home is a fixture)

# -- turns -----------------------------------------------------------------------------------


def test_two_clients_each_get_their_own_reply_one_turn_at_a_time(home):
    agent = FakeAgent(delay=0.005)

    async def go():
        async with running(make(home, agent)) as daemon:
            async with await Client.connect(daemon.socket_path) as a, await Client.connect(daemon.socket_path) as b:
                return await asyncio.gather(collect(a, "one two three"), collect(b, "four five"))

    first, second = run(go())
    assert isinstance(first[0], Started) and isinstance(second[0], Started)
    assert [e.text for e in first if isinstance(e, TextDelta)] == ["one ", "two ", "three "]
    assert [e.text for e in second if isinstance(e, TextDelta)] == ["four ", "five "]
    assert first[-1].text == "one two three" and second[-1].text == "four five"
    assert agent.max_active == 1


def test_queued_turns_run_by_priority_then_in_order(home):
    agent = FakeAgent()

    async def go():
        async with running(make(home, agent)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                first = asyncio.create_task(collect(client, "hold"))
                await until(lambda: daemon.turns.current is not None)
                later = [
                    asyncio.create_task(drain(daemon.submit("nightly backup", who="schedule:backup"))),
                    asyncio.create_task(collect(client, "chat one")),
                    asyncio.create_task(drain(daemon.submit("voice one", who="voice"))),
                    asyncio.create_task(collect(client, "chat two")),
                    asyncio.create_task(drain(daemon.submit("satellite", who="wyoming"))),
                    asyncio.create_task(drain(daemon.submit("voice two", who="voice"))),
                ]
                await until(lambda: daemon.turns.waiting() == 6)
                assert daemon.status()["queued"] == 6 and daemon.status()["busy"]["who"] == "chat"
                agent.release.set()
                await asyncio.gather(first, *later)

    run(go())
    # someone speaking (the microphone, a Home Assistant satellite) goes first
    assert [c["text"] for c in agent.calls] == ["hold", "voice one", "satellite", "voice two", "chat one", "chat two",
                                                "nightly backup"]
    assert [c["who"] for c in agent.calls][-1] == "schedule:backup"


def test_cancel_stops_a_running_reply(home):
    async def go():
        async with running(make(home)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                events = []
                async for event in client.reply("slow 500", request_id="long"):
                    events.append(event)
                    if sum(isinstance(e, TextDelta) for e in events) == 3:
                        await client.cancel("long")
                after = await collect(client, "still here")
                return events, after

    events, after = run(go())
    assert events[-1].stopped_by == "cancelled"
    assert sum(isinstance(e, TextDelta) for e in events) < 500
    assert after[-1].text == "still here"


def test_cancel_drops_a_queued_turn_before_it_runs(home):
    agent = FakeAgent()

    async def go():
        async with running(make(home, agent)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                holding = asyncio.create_task(collect(client, "hold", request_id="h"))
                queued = asyncio.create_task(collect(client, "never run", request_id="q"))
                await until(lambda: daemon.turns.waiting() == 1)
                await client.cancel("q")
                await until(lambda: daemon.turns.waiting() == 0)
                agent.release.set()
                return await holding, await queued

    held, dropped = run(go())
    assert held[-1].text == "released"
    assert dropped == [ReplyDone(text="", stopped_by="cancelled")]
    assert [c["text"] for c in agent.calls] == ["hold"]


def test_cancelling_an_unknown_request_is_an_error(home):
    async def go():
        async with running(make(home)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                return await client.stop("nope")

    assert run(go()) is False


def test_a_turn_that_ignores_cancel_is_cut_off(home):
    async def go():
        async with running(make(home, cancel_grace_s=0.2)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                task = asyncio.create_task(collect(client, "stubborn", request_id="s"))
                await until(lambda: daemon.turns.current is not None)
                started = time.monotonic()
                await client.cancel("s")
                events = await task
                return events, time.monotonic() - started

    events, took = run(go())
    assert events[-1] == ReplyDone(text="", stopped_by="cancelled")
    assert 0.15 < took < 3


def test_a_failing_turn_is_reported_and_the_daemon_goes_on(home):
    async def go():
        async with running(make(home)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                return await collect(client, "boom"), await collect(client, "fine")

    failed, fine = run(go())
    assert any(isinstance(e, Note) and "RuntimeError: boom" in e.text for e in failed)
    assert failed[-1].stopped_by == "error"
    assert fine[-1].text == "fine"


def test_a_reused_request_id_is_refused_while_in_use(home):
    async def go():
        async with running(make(home)) as daemon:
            reader, writer = await asyncio.open_unix_connection(str(daemon.socket_path))
            writer.write(b'{"v":1,"type":"send","id":"x","text":"slow 20"}\n'
                         b'{"v":1,"type":"send","id":"x","text":"again"}\n')
            frames = []
            while not frames or frames[-1]["type"] != "ReplyDone":
                frames.append(json.loads(await reader.readline()))
            writer.close()
            return frames

    errors = [f for f in run(go()) if f["type"] == "error"]
    assert len(errors) == 1 and errors[0]["id"] == "x" and "already in use" in errors[0]["message"]


def test_conversation_and_thinking_reach_the_agent(home):
    agent = FakeAgent()

    async def go():
        daemon = make(home, agent, new_conversation=lambda who: f"conv-{who}")
        async with running(daemon):
            async with await Client.connect(daemon.socket_path) as client:
                fresh = await collect(client, "hi", thinking=True)
                await collect(client, "again", conversation_id="mine")
                return fresh

    fresh = run(go())
    assert fresh[0].conversation_id == "conv-chat"
    assert agent.calls == [
        {"text": "hi", "who": "chat", "conversation_id": "conv-chat", "thinking": True},
        {"text": "again", "who": "chat", "conversation_id": "mine", "thinking": None},
    ]


# -- confirmation ----------------------------------------------------------------------------


def confirm_run(home, answer, **options):
    """Run "unlock back" and answer its confirmation with `answer` (None: say nothing)."""
    agent, decisions = FakeAgent(), []

    async def go():
        async with running(make(home, agent, audit=decisions.append, **options)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                events = []
                async for event in client.reply("unlock back", request_id="u"):
                    events.append(event)
                    if isinstance(event, ConfirmRequest) and answer is not None:
                        await client.answer("u", answer)
                return events

    return run(go()), agent, decisions


def test_confirm_yes_runs_the_tool(home):
    events, agent, decisions = confirm_run(home, True)
    asked = next(e for e in events if isinstance(e, ConfirmRequest))
    assert (asked.tool, asked.arguments, asked.risk, asked.timeout_s) == ("unlock_door", {"door": "back"}, "confirm", 30.0)
    assert agent.confirmed == [True]
    assert next(e for e in events if isinstance(e, ToolFinished)).ok
    assert len(decisions) == 1 and isinstance(decisions[0], ConfirmDecision)
    assert (decisions[0].approved, decisions[0].reason, decisions[0].who) == (True, "approved", "chat")


def test_confirm_no_denies_the_tool(home):
    events, agent, decisions = confirm_run(home, False)
    assert agent.confirmed == [False]
    assert events[-1].text == "I did not unlock it."
    assert (decisions[0].approved, decisions[0].reason) == (False, "denied")


def test_no_answer_in_time_is_a_no(home):
    started = time.monotonic()
    events, agent, decisions = confirm_run(home, None, confirm_timeout_s=0.2)
    assert time.monotonic() - started < 10
    assert next(e for e in events if isinstance(e, ConfirmRequest)).timeout_s == 0.2
    assert agent.confirmed == [False]
    assert (decisions[0].approved, decisions[0].reason) == (False, "timeout")


def test_a_client_that_leaves_during_a_confirmation_is_a_no(home):
    agent, decisions = FakeAgent(), []

    async def go():
        async with running(make(home, agent, audit=decisions.append)) as daemon:
            reader, writer = await asyncio.open_unix_connection(str(daemon.socket_path))
            writer.write(b'{"v":1,"type":"send","id":"u","text":"unlock back"}\n')
            while json.loads(await reader.readline())["type"] != "confirm_request":
                pass
            writer.close()
            await until(lambda: agent.confirmed)
            async with await Client.connect(daemon.socket_path) as client:
                return await collect(client, "after")

    after = run(go())
    assert agent.confirmed == [False]
    assert decisions[0].reason == "client gone"
    assert after[-1].text == "after"


def test_a_scheduled_turn_is_never_asked_and_denied(home):
    agent, decisions = FakeAgent(), []

    async def go():
        async with running(make(home, agent, audit=decisions.append)) as daemon:
            return await drain(daemon.submit("unlock garage", who="schedule:morning"))

    events = run(go())
    assert not any(isinstance(e, ConfirmRequest) for e in events)
    assert agent.confirmed == [False]
    assert (decisions[0].reason, decisions[0].who) == ("non-interactive", "schedule:morning")


def test_the_ask_helper_denies_unless_told_to_approve(home):
    seen = []

    async def go():
        async with running(make(home)) as daemon:
            denied = await ask(daemon.socket_path, "unlock back", on_event=seen.append)
            approved = await ask(daemon.socket_path, "unlock back", on_confirm=lambda request: request.tool == "unlock_door")
            return denied, approved

    denied, approved = run(go())
    assert (denied.text, approved.text) == ("I did not unlock it.", "Unlocked.")
    assert any(isinstance(e, ToolFinished) and not e.ok for e in seen)


def test_an_answer_with_nothing_waiting_is_an_error(home):
    async def go():
        async with running(make(home)) as daemon:
            reader, writer = await asyncio.open_unix_connection(str(daemon.socket_path))
            writer.write(b'{"v":1,"type":"confirm","id":"zz","approve":true}\n')
            frame = json.loads(await reader.readline())
            writer.close()
            return frame

    frame = run(go())
    assert frame["type"] == "error" and frame["id"] == "zz" and frame["about"] == "confirm"
    assert "no confirmation is waiting" in frame["message"]


# -- status, history, reload, hooks ----------------------------------------------------------


def test_status_history_and_reload_answer_over_the_socket(home):
    reloads = []

    def history(conversation_id, limit):
        return conversation_id or "latest", [{"role": "user", "content": "hi"}][:limit]

    async def go():
        daemon = make(home, history=history, reload=lambda: reloads.append(1), status=lambda: {"model": "fake"})
        async with running(daemon):
            async with await Client.connect(daemon.socket_path) as client:
                status = await client.status()
                report = await client.history(limit=5)
                after = await client.reload()
                return status, report, after

    status, report, after = run(go())
    assert status["pid"] == os.getpid() and status["model"] == "fake" and status["queued"] == 0
    assert status["services"] == {"turns": "running"}
    assert (report.conversation_id, report.messages) == ("latest", [{"role": "user", "content": "hi"}])
    assert reloads == [1] and after["pid"] == os.getpid()


def test_missing_history_and_failing_reload_are_errors(home):
    def bad_reload():
        raise ValueError("config.yaml: model.top_p: expected at most 1, got 7")

    async def go():
        async with running(make(home, reload=bad_reload)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                with pytest.raises(RequestFailed, match="history is not available"):
                    await client.history()
                with pytest.raises(RequestFailed, match="reload failed: config.yaml: model.top_p"):
                    await client.reload()
                return await client.status()

    assert run(go())["pid"] == os.getpid()


def test_store_hooks_write_and_read_a_real_store(home):
    from agent.store import Store

    store = Store.open_in(home)
    try:
        hooks = store_hooks(store)
        cid = hooks["new_conversation"]("chat")
        store.add_message(cid, {"role": "user", "content": "hello"})
        assert hooks["history"](None, 10) == (cid, [{"role": "user", "content": "hello"}])
        assert "audit" not in hooks  # the executor writes the one row of each call
    finally:
        store.close()


def test_announcements_reach_every_connected_client(home):
    from agent.schedule.spec import Announcement

    async def go():
        daemon = make(home)
        async with running(daemon):
            nobody = daemon.announce(Announcement(job_id="j0", kind="reminder", text="unheard", speak=False, scheduled=None))
            async with await Client.connect(daemon.socket_path) as a, await Client.connect(daemon.socket_path) as b:
                await a.status(), await b.status()  # both are connected and served
                heard = daemon.announce(Announcement(job_id="j1", kind="reminder", text="water the plants", speak=False, scheduled=None))
                await until(lambda: a.notices and b.notices)
                return nobody, heard, a.notices, b.notices

    nobody, heard, seen_a, seen_b = run(go())
    assert nobody is False and heard is True
    assert [(n.kind, n.text, n.job_id) for n in seen_a] == [("reminder", "water the plants", "j1")]
    assert seen_a == seen_b
