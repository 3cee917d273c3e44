"""A message sent while the model warms up waits with its progress shown, and its turn (and
time limit) starts only when the warm-up ends. A real daemon over a real socket; the warm-up
is the real WarmUp object that the MLX thread reports into, driven here by the test."""

import asyncio
from types import SimpleNamespace

from agent.events import Note, ReplyDone, TextDelta
from agent.ipc import Client
from agent.llm.warmup import WarmUp
from fakes import FakeAgent, home, make, run, running, until  # noqa: F401  (home is a fixture)


def warming_agent(total=100, done=40):
    agent = FakeAgent()
    agent.llm = SimpleNamespace(warmup=WarmUp())
    agent.llm.warmup.enter("prefix", total)
    agent.llm.warmup.advance(done)
    return agent


def test_a_message_during_warm_up_waits_with_progress_then_runs(home):
    agent = warming_agent()

    async def go():
        daemon = make(home, agent)
        daemon.warm_up_note_s = 0.05
        async with running(daemon):
            async with await Client.connect(daemon.socket_path) as client:
                events = []

                async def read():
                    async for event in client.reply("hello there"):
                        events.append(event)

                reader = asyncio.create_task(read())
                await until(lambda: sum(isinstance(e, Note) for e in events) >= 2)
                assert agent.calls == []  # the turn has not started: its time limit is not running
                status = daemon.status()
                agent.llm.warmup.advance(100)
                agent.llm.warmup.finish("prefix built")
                await asyncio.wait_for(reader, 5)
                return events, status

    events, status = run(go())
    notes = [e for e in events if isinstance(e, Note)]
    assert notes[0].text.startswith("Warming up the model: reading its instructions and tools, 40 of 100 tokens")
    assert notes[0].level == "info"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "hello there "
    assert events[-1].stopped_by == "done"
    assert [c["text"] for c in agent.calls] == ["hello there"]


def test_a_message_cancelled_during_warm_up_never_starts(home):
    agent = warming_agent()

    async def go():
        daemon = make(home, agent)
        async with running(daemon):
            async with await Client.connect(daemon.socket_path) as client:
                events = []
                rid = client.new_id()

                async def read():
                    async for event in client.reply("hello", request_id=rid):
                        events.append(event)

                reader = asyncio.create_task(read())
                await until(lambda: any(isinstance(e, Note) for e in events))
                await client.cancel(rid)
                await asyncio.wait_for(reader, 5)
                return events

    events = run(go())
    assert isinstance(events[-1], ReplyDone) and events[-1].stopped_by == "cancelled"
    assert agent.calls == []


def test_status_reports_the_warm_up_and_its_time_left():
    warmup = WarmUp()
    assert warmup.report()["phase"] == "loading" and not warmup.ready
    warmup.enter("prefix", 766)
    warmup.advance(128)
    report = warmup.report()
    assert (report["phase"], report["done_tokens"], report["total_tokens"]) == ("prefix", 128, 766)
    assert report["seconds_left"] is not None and "128 of 766 tokens" in report["text"]
    warmup.finish("prefix loaded from the home folder")
    assert warmup.ready and warmup.report()["text"] == "model ready (prefix loaded from the home folder)"


def test_a_phrase_the_fast_path_answers_does_not_wait_for_the_warm_up(home):
    agent = warming_agent()
    agent.intents = SimpleNamespace(match=lambda text: "match" if text.startswith("turn on") else None)

    async def go():
        async with running(make(home, agent)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                return [event async for event in client.reply("turn on the kitchen lights")]

    events = run(go())
    assert not any(isinstance(e, Note) for e in events)
    assert events[-1].stopped_by == "done" and agent.calls
