"""Spoken confirmation of confirm-tier tools, end to end with real parts: espeak-ng speech,
Silero VAD, faster-whisper tiny.en, a real daemon and socket, the bundled home skill's lock
phrase, and a lock on a real mosquitto broker played by a second MQTT client.

"hey agent, lock the back door" asks "Lock the back door? Say yes or no." aloud; only a clear
yes locks it. A chat window sees the same question and may answer it first.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agent.daemon.assembly import apply_skills, core_registry, device_slots
from agent.daemon.core import store_hooks
from agent.home_control import start_home
from agent.ipc import Client
from agent.ipc.protocol import VERSION, Confirm, Error, OpenQuestion, ProtocolError, QuestionSettled, encode, parse_event
from agent.daemon.questions import Answer, Question
from agent.config.settings import load_settings
from agent.store import Store
from agent.turn import Agent
from agent.voice.answers import hear_answer, spoken_question
from agent.voice.door import VoiceDoor, house_words
from agent.voice.pipeline import VoicePipeline
from agent.voice.service import daemon_respond
from agent.voice.sources import WavSource
from agent.voice.tts import SilentSpeaker
from agent.voice.vad import Endpointer, SileroVAD
from agent.voice.wake import Wake
from fakes import make, running, until
from mosquitto import HOST, broker  # noqa: F401  (a fixture)
from agent.testkit.scripted_llm import ScriptedLLM
from agent.testkit.speech import silence, speech, synth, write
from test_home_mqtt import Peer

WAKE = Wake(["hey agent", "okay agent"])
COMMAND = "hey agent, lock the back door"
QUESTION = "Lock the back door? Say yes or no."
# Between the command and the answer: room for a slow transcription of the command (over 1.5 s
# on a busy CPU) and the question, since an answer begun before the question ended is not heard.
GAP_S = 3.5
LOCK = {"name": "back door", "room": "hall", "kind": "lock",
        "mqtt": {"command_topic": "home/back/set", "state_topic": "home/back"}}


# -- hearing the answer ---------------------------------------------------------------------------


@pytest.mark.parametrize("said, meaning", [
    ("Yes.", "yes"), ("Yeah.", "yes"), ("Yes, please.", "yes"), ("Go ahead.", "yes"), ("Do it.", "yes"),
    ("Okay.", "yes"), ("yas", "yes"), ("Hey agent, yes.", "yes"),
    ("No.", "no"), ("Nope.", "no"), ("Stop.", "no"), ("Don't.", "no"), ("Hey agent, no.", "no"),
    ("Yesterday.", "unclear"), ("Yes, no.", "unclear"), ("Lock the back door.", "unclear"), ("Mess.", "unclear"),
    ("I guess yes.", "unclear"), ("", "unclear"), ("Hey agent.", "unclear"),
])
def test_only_a_clear_yes_is_a_yes(said, meaning):
    assert hear_answer(said, WAKE) == meaning


def test_the_question_uses_the_tools_own_wording_or_a_plain_sentence():
    def lock(device, action): ...

    lock.confirm_question = "{action} the {device}?"
    worded = SimpleNamespace(name="set_secure_device", function=lock)
    assert spoken_question(worded, {"device": "back door", "action": "lock"}) == QUESTION
    assert spoken_question(worded, {"device": "back door"}) == "Should I set secure device back door? Say yes or no."
    plain = SimpleNamespace(name="unlock_door", function=lambda door: None)
    assert spoken_question(plain, {"door": "front"}) == "Should I unlock door front? Say yes or no."


# -- the daemon's voice door, a lock on a real broker -----------------------------------------------


@pytest.fixture
def stt(whisper_stt):
    """The session's tiny.en; the door biases it toward this home's names for one test only."""
    prompt = whisper_stt.prompt
    yield whisper_stt
    whisper_stt.prompt = prompt


@pytest.fixture
def lock(broker):  # noqa: F811
    """The back door lock: agentd's home control and a peer client that plays the lock."""
    settings = load_settings(overrides={"home": {"mqtt": {"host": HOST, "port": broker.port, "state_wait_s": 1.0},
                                                 "devices": [LOCK]}})
    service = start_home(settings)
    assert service.mqtt.wait_connected(5), broker.log_tail()
    device = Peer(broker.port).play("home/back/set", "home/back", {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"})
    yield SimpleNamespace(settings=settings, service=service, device=device)
    device.close()
    service.stop()


def voice_turn(tmp_path, stt, lock, audio, *, window_s=6.0, chat=None, realtime=True):
    """Say `audio` to a daemon's voice door; (spoken lines, utterance reports, audit outcomes, notices).

    In real time, as a person would: the answer comes after the question, not while the turn
    is still on its way to it. `chat(client)`, if given, runs as a chat window meanwhile."""
    store = Store(tmp_path / "agentd.db")
    agent = Agent(llm=ScriptedLLM([]), registry=core_registry(), system_prompt="You run the home.", store=store)
    agent.home_control = lock.service  # as the daemon's assembly hands it in
    apply_skills(agent, lock.settings, tmp_path, store, device_slots(lock.service))
    speaker = SilentSpeaker()
    wav = write(tmp_path / "talk.wav", *audio)
    home = tmp_path / "home"
    home.mkdir()

    async def go():
        async with running(make(home, agent, **store_hooks(store))) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                pipeline = VoicePipeline(source=WavSource(wav, realtime=realtime, tail_s=0.5), endpointer=Endpointer(SileroVAD()), stt=stt,
                                         respond=None, wake=WAKE, speaker=speaker, confirm_window_s=window_s)
                pipeline.respond = daemon_respond(daemon, confirm=pipeline.confirm)
                door = VoiceDoor(daemon, lock.settings.voice, store=store, pipeline=pipeline)
                door.use_words(house_words(agent, lock.service))
                answering = asyncio.create_task(chat(client)) if chat else None
                await door.serve()
                if answering:
                    await answering
                await client.status()  # every frame sent before this answer has arrived
                return pipeline.reports, list(client.notices)

    reports, notices = asyncio.run(asyncio.wait_for(go(), 60))
    # (outcome, why): the row's detail ends with the confirmation's reason
    outcomes = [(e.outcome, e.detail.rsplit("; ", 1)[-1]) for e in store.audit_entries(tool="set_secure_device")]
    return speaker.said, reports, outcomes, notices


def test_a_spoken_yes_locks_the_door(tmp_path, stt, lock):
    say = lambda text, name: speech(text, tmp_path / f"{name}.wav")
    said, reports, outcomes, notices = voice_turn(
        tmp_path, stt, lock, [silence(0.3), say(COMMAND, "a"), silence(GAP_S), say("yes", "b"), silence(0.5)])
    assert lock.device.next() == ("home/back/set", b"LOCK")  # what the broker carried to the lock
    [command] = [r for r in reports if r.command is not None]
    [answer] = [r for r in reports if r.answer is not None]  # reported before the turn it answers ends
    assert command.command.lower().rstrip(".") == "lock the back door", command.line()
    assert command.tools == ["set_secure_device"] and command.reply == "Back door is locked"
    assert answer.answer == "yes" and answer.command is None  # the answer is not a new command
    assert said == [QUESTION, "Back door is locked"]
    assert ("ok", "yes") in outcomes, outcomes  # the one row of the call says why it ran
    [asked] = [n for n in notices if isinstance(n, OpenQuestion)]
    assert (asked.text, asked.tool, asked.arguments) == (QUESTION, "set_secure_device",
                                                         {"device": "back door", "action": "lock"})
    [settled] = [n for n in notices if isinstance(n, QuestionSettled)]
    assert (settled.id, settled.approved, settled.by, settled.reason) == (asked.id, True, "voice", "yes")


@pytest.mark.parametrize("answer, reason, spoken", [
    ("no", "no", "Okay, I won't."),
    (None, "silence", "No answer, so I won't."),
    ("noise", None, None),  # white noise: dropped by the VAD (silence) or by the guards (unclear)
])
def test_no_silence_or_noise_leaves_the_door_unlocked(tmp_path, stt, lock, answer, reason, spoken):
    audio = [silence(0.3), speech(COMMAND, tmp_path / "a.wav"), silence(GAP_S)]
    if answer == "no":
        audio.append(speech("no", tmp_path / "b.wav"))
    elif answer == "noise":
        audio.append(synth(tmp_path / "n.wav", 1.0, "whitenoise", "vol", "0.3"))
    window_s = 1.0 if answer is None else 4.0
    said, reports, outcomes, notices = voice_turn(tmp_path, stt, lock, [*audio, silence(0.5)], window_s=window_s,
                                                  realtime=answer is not None)  # silence: the clock alone
    assert lock.device.silent(0.5), "the lock was sent a command"
    [settled] = [n for n in notices if isinstance(n, QuestionSettled)]
    assert outcomes == [("denied", settled.reason)]  # one row, saying why not
    assert not settled.approved and settled.by == "voice"
    if reason:
        assert settled.reason == reason
    else:
        assert settled.reason in ("silence", "unclear")
    assert said[0] == QUESTION and said[1] in ("Okay, I won't.", "No answer, so I won't.", "I did not hear a yes, so I won't.")
    if spoken:
        assert said[1] == spoken
    assert "not done" in " ".join(said[2:]).lower()  # then the turn's own reply
    assert [r.tools for r in reports if r.command is not None] == [["set_secure_device"]]  # the answer never ran


def test_a_chat_window_answers_the_spoken_question_first(tmp_path, stt, lock):
    async def chat(client):
        await until(lambda: client.questions, timeout=30)
        [question] = client.questions.values()
        await client.answer(question.id, True)
        await until(lambda: not client.questions, timeout=5)

    audio = [silence(0.3), speech(COMMAND, tmp_path / "a.wav"), silence(0.5)]
    said, reports, outcomes, notices = voice_turn(tmp_path, stt, lock, audio, window_s=20.0, chat=chat, realtime=False)
    assert lock.device.next() == ("home/back/set", b"LOCK")
    [settled] = [n for n in notices if isinstance(n, QuestionSettled)]
    assert (settled.approved, settled.by) == (True, "chat")
    assert said == [QUESTION, "Answered in a chat window: yes.", "Back door is locked"]
    assert [o for o, _ in outcomes] == ["ok"]


# -- chat windows and the open question (no audio) ---------------------------------------------------


def open_question(window_s: float = 5.0) -> Question:
    return Question(text=QUESTION, tool="set_secure_device", arguments={"device": "back door", "action": "lock"},
                    risk="confirm", window_s=window_s)


def test_the_first_answer_wins_and_every_window_is_told_it_is_settled(tmp_path):
    async def go():
        async with running(make(tmp_path)) as daemon:
            async with await Client.connect(daemon.socket_path) as first, \
                    await Client.connect(daemon.socket_path) as second:
                await until(lambda: len(daemon.server.connections) == 2)
                question = open_question()
                daemon.questions.put(question)
                await until(lambda: first.questions and second.questions)
                await second.answer(question.id, False)
                answer = await asyncio.wait_for(asyncio.shield(question.answer), 5)
                voice_too_late = question.settle(Answer(approved=True, by="voice", reason="yes"))
                await until(lambda: not first.questions and not second.questions)
                # A third window answering now is told, by an error naming the question.
                reader, writer = await asyncio.open_unix_connection(str(daemon.socket_path))
                writer.write(encode(Confirm(v=VERSION, type="confirm", id=question.id, approve=True)))
                await writer.drain()
                _, late = parse_event(await asyncio.wait_for(reader.readline(), 5))
                writer.close()
                return answer, voice_too_late, late, first.notices, daemon.questions.open

    answer, voice_too_late, late, notices, still_open = asyncio.run(go())
    assert answer == Answer(approved=False, by="chat", reason="no") and not voice_too_late
    assert isinstance(late, Error) and late.about == "confirm"
    assert late.message == f"question {late.id!r} is already settled (by chat: no)"
    asked, settled = notices
    assert isinstance(asked, OpenQuestion) and asked.text == QUESTION and asked.timeout_s == 5.0
    assert isinstance(settled, QuestionSettled) and (settled.approved, settled.by, settled.reason) == (False, "chat", "no")
    assert still_open == {}


def test_question_frames_are_validated():
    good = {"v": VERSION, "type": "settled", "id": "question-1", "approved": True, "by": "voice", "reason": "yes"}
    assert parse_event(encode(good))[1] == QuestionSettled(**good)
    with pytest.raises(ProtocolError, match="reason"):
        parse_event(encode({**good, "reason": "maybe"}))
    with pytest.raises(ProtocolError, match="approved"):
        parse_event(encode({**good, "approved": "yes"}))


def test_the_chat_window_answers_with_slash_yes(tmp_path):
    from io import StringIO

    from rich.console import Console

    from agent.tui.app import ChatApp
    from agent.tui.commands import SlashCommand

    async def go():
        async with running(make(tmp_path)) as daemon:
            app = ChatApp(daemon.socket_path, console=Console(file=StringIO(), width=100, color_system=None))
            app.client = await Client.connect(daemon.socket_path)
            try:
                await app._command(SlashCommand("yes"))  # nothing asked yet
                await until(lambda: len(daemon.server.connections) == 1)
                question = open_question()
                daemon.questions.put(question)  # asked while the window waits at its prompt
                await app._command(SlashCommand("yes"))
                return question.answer.result(), app.console.file.getvalue()
            finally:
                await app.client.close()

    answer, screen = asyncio.run(go())
    assert answer == Answer(approved=True, by="chat", reason="yes")
    assert "no question is waiting" in screen
    assert f"asked aloud: {QUESTION}" in screen and "question settled by chat: yes" in screen


def test_speech_begun_while_the_question_is_asked_is_not_its_answer(tmp_path, stt):
    """A microphone near the speaker hears the question itself; that is never the answer."""
    from agent.events import ReplyDone
    from fakes import UNLOCK

    class SlowSpeaker(SilentSpeaker):
        async def speak(self, text):
            await super().speak(text)
            if len(self.said) == 1:
                await asyncio.sleep(2.5)  # the question, said aloud, takes a while

    decided = []

    async def respond(text):
        decided.append(bool(await pipeline.confirm(UNLOCK, {"door": "front"})))
        yield ReplyDone(text="", stopped_by="done")

    wav = write(tmp_path / "talk.wav", silence(0.3), speech("hey agent, unlock the front door", tmp_path / "a.wav"),
                silence(0.5), speech("yes", tmp_path / "b.wav"), silence(0.5))
    pipeline = VoicePipeline(source=WavSource(wav, realtime=True, tail_s=0.5), endpointer=Endpointer(SileroVAD()),
                             stt=stt, respond=respond, wake=WAKE, speaker=SlowSpeaker(), confirm_window_s=0.5)
    reports = asyncio.run(asyncio.wait_for(pipeline.run(), 30))
    assert decided == [False]
    [heard_yes] = [r for r in reports if r.heard.lower().startswith("yes")]
    assert heard_yes.answer is None and heard_yes.ignored.startswith("heard while the question was asked")
    assert pipeline.speaker.said == ["Should I unlock door front? Say yes or no.", "No answer, so I won't."]


def test_a_model_turn_in_this_process_asks_aloud_after_what_it_said_so_far(tmp_path, stt):
    """`agentd listen --local`'s wiring (agent_respond with the pipeline's confirm), through a
    real Agent whose model says half a sentence and then calls a confirm-tier tool."""
    from agent.tools import ToolRegistry
    from agent.voice.service import agent_respond
    from fakes import UNLOCK
    from agent.testkit.scripted_llm import xml_call

    registry = ToolRegistry()
    registry.add(UNLOCK)
    agent = Agent(llm=ScriptedLLM(["I will open it for you" + xml_call("unlock_door", door="front"), "It is open."]),
                  registry=registry, system_prompt="You run the home.")
    wav = write(tmp_path / "talk.wav", silence(0.3), speech("hey agent, open the front door", tmp_path / "a.wav"),
                silence(GAP_S), speech("yeah", tmp_path / "b.wav"), silence(0.5))
    speaker = SilentSpeaker()
    pipeline = VoicePipeline(source=WavSource(wav, realtime=True, tail_s=0.5), endpointer=Endpointer(SileroVAD()),
                             stt=stt, respond=None, wake=WAKE, speaker=speaker, confirm_window_s=4.0)
    pipeline.respond = agent_respond(agent, confirm=pipeline.confirm)
    reports = asyncio.run(asyncio.wait_for(pipeline.run(), 30))
    [command] = [r for r in reports if r.command is not None]
    assert command.tool_results == ["front unlocked"], command.line()
    assert speaker.said == ["I will open it for you", "Should I unlock door front? Say yes or no.", "It is open."]
