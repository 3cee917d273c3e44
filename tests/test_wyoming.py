"""agentd as a Wyoming service, driven exactly as Home Assistant's wyoming integration drives it
(tests/ha_wyoming.py mirrors it), with the `wyoming` library as the client, over 127.0.0.1.

Real parts: the daemon's turn queue, a real Agent with the bundled home skill's phrases, the
home's devices on a real mosquitto broker (a second MQTT client plays them), speech from
espeak-ng heard by faster-whisper tiny.en, and speech made by espeak-ng for Home Assistant.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import wave
from types import SimpleNamespace

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.handle import Handled, NotHandled
from wyoming.tts import Synthesize, SynthesizeVoice

from agent.daemon.assembly import apply_skills, core_registry, device_slots
from agent.daemon.core import store_hooks
from agent.home_control import start_home
from agent.skills.phrases import normalize
from agent.config.settings import ConfigError, load_settings
from agent.store import Store
from agent.turn import Agent
from agent.wyoming import WyomingListenError, wyoming_door
from fakes import make, running, until
from ha_wyoming import ha_converse, ha_describe, ha_stream_synthesize, ha_synthesize, ha_transcribe
from mosquitto import HOST, broker, free_port  # noqa: F401  (broker: a fixture)
from agent.testkit.scripted_llm import ScriptedLLM
from agent.testkit.speech import need, s16, speech, synth
from test_home_mqtt import Peer

LIGHTS = {"name": "kitchen lights", "room": "kitchen", "kind": "light",
          "mqtt": {"command_topic": "home/kitchen/set", "state_topic": "home/kitchen"}}
LOCK = {"name": "back door", "room": "hall", "kind": "lock",
        "mqtt": {"command_topic": "home/back/set", "state_topic": "home/back"}}


# -- agentd's side: a daemon whose `wyoming` service is the door ----------------------------------


@pytest.fixture
def home(broker):  # noqa: F811
    """Kitchen lights and the back door lock on the broker, each played by a peer client."""
    settings = load_settings(overrides={"home": {"mqtt": {"host": HOST, "port": broker.port, "state_wait_s": 1.0},
                                                 "devices": [LIGHTS, LOCK]}})
    service = start_home(settings)
    assert service.mqtt.wait_connected(5), broker.log_tail()
    lights = Peer(broker.port).play("home/kitchen/set", "home/kitchen")
    lock = Peer(broker.port).play("home/back/set", "home/back", {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"})
    yield SimpleNamespace(settings=settings, service=service, lights=lights, lock=lock)
    lights.close()
    lock.close()
    service.stop()


def wyoming_settings(**wyoming):
    return load_settings(overrides={"wyoming": {"enabled": True, "host": HOST, "port": free_port(), **wyoming}})


@contextlib.asynccontextmanager
async def serving(tmp_path, settings, *, stt=None, agent=None, store=None):
    """A daemon (a FakeAgent unless given one) with the Wyoming door as its service; the door."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    daemon = make(home, agent, **(store_hooks(store) if store else {}))
    door = wyoming_door(daemon, settings, stt=stt)
    daemon.add_service("wyoming", door.serve)
    async with running(daemon):
        await until(lambda: door.port is not None, timeout=20)
        yield door


def home_agent(tmp_path, home, outputs=()):
    """A real Agent with the bundled skills' phrases for this home; (agent, store, model)."""
    store = Store(tmp_path / "agentd.db")
    llm = ScriptedLLM(list(outputs))
    agent = Agent(llm=llm, registry=core_registry(), system_prompt="You run the home.", store=store)
    agent.home_control = home.service  # as the daemon's assembly hands it in
    apply_skills(agent, home.settings, tmp_path, store, device_slots(home.service))
    return agent, store, llm


# -- describe ------------------------------------------------------------------------------------


def test_describe_offers_speech_to_text_speech_and_the_agent(tmp_path, whisper_stt):
    need("espeak-ng")

    async def go():
        async with serving(tmp_path, wyoming_settings(), stt=whisper_stt) as door:
            return await ha_describe(door.port)

    info = asyncio.run(go())
    [asr], [tts], [handle] = info.asr, info.tts, info.handle
    assert asr.installed and [(m.name, m.languages, m.installed) for m in asr.models] == [("tiny.en", ["en"], True)]
    voices = {v.name: v for v in tts.voices}
    assert tts.installed and "en-us" in voices and "en" in voices["en-us"].languages
    assert all(v.installed for v in tts.voices)
    # What Home Assistant needs to make a conversation agent that may control the home, for
    # every language (no languages listed = all).
    assert handle.installed and handle.supports_home_control
    assert [(m.installed, m.languages) for m in handle.models] == [(True, [])]
    assert info.satellite is None  # else Home Assistant would load none of the three


# -- transcribe ----------------------------------------------------------------------------------


def test_real_speech_becomes_the_transcript(tmp_path, whisper_stt):
    audio = s16(speech("turn on the kitchen lights", tmp_path / "said.wav"))

    async def go():
        async with serving(tmp_path, wyoming_settings(), stt=whisper_stt) as door:
            return await ha_transcribe(door.port, audio)

    assert normalize(asyncio.run(go())) == "turn on the kitchen lights"


def test_noise_is_not_passed_on_as_a_command(tmp_path, whisper_stt):
    noise = s16(synth(tmp_path / "noise.wav", 1.5, "whitenoise", "vol", "0.3"))

    async def go():
        async with serving(tmp_path, wyoming_settings(), stt=whisper_stt) as door:
            return await ha_transcribe(door.port, noise)

    assert asyncio.run(go()) == ""


# -- synthesize ----------------------------------------------------------------------------------


def test_synthesized_speech_is_pcm_that_whisper_hears_back(tmp_path, whisper_stt):
    """The audio Home Assistant would play, sent back as another request's audio (22.05 kHz,
    converted by the door) is heard as the words it was made from."""
    need("espeak-ng")
    text = "turn on the kitchen lights"

    async def go():
        async with serving(tmp_path, wyoming_settings(), stt=whisper_stt) as door:
            types, wav = await ha_synthesize(door.port, text)
            british_types, british = await ha_synthesize(door.port, text, voice="en-gb")
            with wave.open(io.BytesIO(wav), "rb") as w:
                fmt = (w.getframerate(), w.getsampwidth(), w.getnchannels())
                frames = w.readframes(w.getnframes())
            heard = await ha_transcribe(door.port, frames, rate=fmt[0], width=fmt[1], channels=fmt[2])
            return types, fmt, frames, heard, british

    types, fmt, frames, heard, british = asyncio.run(go())
    assert types[0] == "audio-start" and types[-1] == "audio-stop" and set(types[1:-1]) == {"audio-chunk"}
    assert fmt == (22050, 2, 1)
    seconds = len(frames) / (2 * 22050)
    assert 1.0 < seconds < 4.0, seconds  # six words at espeak-ng's 175 words a minute
    assert np.abs(np.frombuffer(frames, "<i2")).max() > 3000  # speech, not silence
    assert normalize(heard) == normalize(text)
    assert british is not None and british != b""


def test_streamed_text_is_spoken_sentence_by_sentence_and_only_once(tmp_path, whisper_stt):
    need("espeak-ng")
    pieces = ["The kitchen ", "lights are on. The back", " door is ", "locked."]  # as a model writes it

    async def go():
        async with serving(tmp_path, wyoming_settings(), stt=whisper_stt) as door:
            info = await ha_describe(door.port)
            types, fmt, audio = await ha_stream_synthesize(door.port, pieces)
            _, whole = await ha_synthesize(door.port, "".join(pieces))
            heard = await ha_transcribe(door.port, audio, rate=fmt[0], width=fmt[1], channels=fmt[2])
            return info, types, fmt, audio, whole, heard

    info, types, fmt, audio, whole, heard = asyncio.run(go())
    assert info.tts[0].supports_synthesize_streaming  # else Home Assistant never streams
    assert types.count("audio-start") == types.count("audio-stop") == 2  # one per sentence, as each completes
    assert types[-1] == "synthesize-stopped" and fmt == (22050, 2, 1)
    with wave.open(io.BytesIO(whole), "rb") as w:
        whole_seconds = w.getnframes() / w.getframerate()
    seconds = len(audio) / (2 * 22050)
    # The copy of the whole text inside the stream is not spoken a second time.
    assert 0.7 * whole_seconds < seconds < 1.3 * whole_seconds, (seconds, whole_seconds)
    assert "kitchen lights are on" in normalize(heard) and "locked" in normalize(heard), heard


def test_an_unknown_voice_is_an_error_event_and_the_connection_closes(tmp_path):
    need("espeak-ng")

    async def go():
        async with serving(tmp_path, wyoming_settings()) as door:
            async with AsyncTcpClient(HOST, door.port) as client:
                await client.write_event(Synthesize(text="hello", voice=SynthesizeVoice(name="klingon")).event())
                first = await asyncio.wait_for(client.read_event(), 10)
                after = await asyncio.wait_for(client.read_event(), 10)
            return first, after

    first, after = asyncio.run(go())
    assert Error.is_type(first.type) and "no voice 'klingon'" in Error.from_event(first).text
    assert after is None  # Home Assistant sees the connection end and reports the failure


# -- transcript -> the agent's turn -> handled --------------------------------------------------


def converse(tmp_path, home, said: list[tuple[str, str]], *, outputs=(), **wyoming):
    """Each (text, conversation id) sent as Home Assistant's conversation agent sends it; the
    answers, the store and the model stand-in."""
    agent, store, llm = home_agent(tmp_path, home, outputs)

    async def go():
        async with serving(tmp_path, wyoming_settings(**wyoming), agent=agent, store=store) as door:
            return [await ha_converse(door.port, text, cid) for text, cid in said]

    return asyncio.run(asyncio.wait_for(go(), 60)), store, llm


def test_turn_on_the_kitchen_lights_reaches_the_broker(tmp_path, home):
    [answer], store, _ = converse(tmp_path, home, [("Turn on the kitchen lights.", "01HA-CONV-1")])
    assert home.lights.next() == ("home/kitchen/set", b"ON")  # what the broker carried to the lights
    assert isinstance(answer, Handled) and "kitchen lights" in answer.text.lower() and " on" in answer.text.lower()
    assert answer.context == {"conversation_id": "01HA-CONV-1"}  # Home Assistant keeps its id
    [row] = store.audit_entries(tool="set_device")
    assert (row.outcome, row.who) == ("ok", "wyoming")


def test_a_lock_is_not_locked_over_wyoming_unless_allowed(tmp_path, home):
    [answer], store, _ = converse(tmp_path, home, [("Lock the back door.", "01HA-CONV-2")])
    assert home.lock.silent(0.5), "the lock was sent a command"
    assert isinstance(answer, Handled) and "not done" in answer.text.lower(), answer.text
    [row] = store.audit_entries(tool="set_secure_device")
    assert (row.outcome, row.who) == ("denied", "wyoming")
    assert row.detail.endswith("nobody to ask over wyoming (not in wyoming.allow_confirm)"), row.detail


def test_a_lock_named_in_allow_confirm_is_locked(tmp_path, home):
    [answer], store, _ = converse(tmp_path, home, [("Lock the back door.", "01HA-CONV-3")],
                                  allow_confirm=["set_secure_device"])
    assert home.lock.next() == ("home/back/set", b"LOCK")
    assert isinstance(answer, Handled) and answer.text == "Back door is locked"
    [row] = store.audit_entries(tool="set_secure_device")
    assert (row.outcome, row.who) == ("ok", "wyoming") and row.detail.endswith("allowed by wyoming.allow_confirm")


def test_home_assistants_conversation_id_keeps_one_conversation(tmp_path, home):
    said = [("My name is Ada.", "01HA-A"), ("What is my name?", "01HA-A"), ("What is my name?", "01HA-B")]
    answers, store, llm = converse(tmp_path, home, said,
                                   outputs=["Hello, Ada.", "You are Ada.", "I do not know your name."])
    assert [a.text for a in answers] == ["Hello, Ada.", "You are Ada.", "I do not know your name."]
    assert [a.context for a in answers] == [{"conversation_id": c} for _, c in said]
    seen = [[m["content"] for m in request.messages if m["role"] != "system"] for request in llm.requests]
    assert seen[1][-3:] == ["My name is Ada.", "Hello, Ada.", "What is my name?"]  # the follow-up sees the first
    assert "My name is Ada." not in seen[2]  # another of Home Assistant's conversations does not
    conversations = [c for c in store.conversations() if c.source == "wyoming"]
    assert sorted(c.message_count for c in conversations) == [2, 4]


# -- settings and start-up --------------------------------------------------------------------------


def test_an_address_in_use_is_one_clear_line(tmp_path):
    settings = wyoming_settings()
    door = wyoming_door(None, settings)
    door.speech, door.stt = None, None  # only the listening matters here

    async def go():
        taken = await asyncio.start_server(lambda r, w: None, HOST, settings.wyoming.port)
        try:
            with pytest.raises(WyomingListenError, match=f"cannot listen on {HOST}:{settings.wyoming.port}: "):
                await door.start()
        finally:
            taken.close()

    asyncio.run(go())


def test_wyoming_is_off_by_default_and_its_port_is_checked():
    assert not load_settings().wyoming.enabled and load_settings().wyoming.allow_confirm == []
    with pytest.raises(ConfigError, match="wyoming.port"):
        load_settings(overrides={"wyoming": {"port": 70000}})


def test_a_turn_that_fails_is_not_handled_and_the_next_one_is(tmp_path):
    async def go():
        async with serving(tmp_path, wyoming_settings()) as door:  # a FakeAgent: "boom" raises
            return await ha_converse(door.port, "boom", "01HA-X"), await ha_converse(door.port, "hello there", "01HA-X")

    failed, fine = asyncio.run(go())
    assert isinstance(failed, NotHandled) and failed.text == "agentd could not answer."
    assert isinstance(fine, Handled) and fine.text == "hello there"


def test_zeroconf_without_its_package_is_one_line_and_the_rest_serves(tmp_path, caplog):
    try:
        import zeroconf  # noqa: F401
        pytest.skip("zeroconf is installed: announcing would reach beyond 127.0.0.1")
    except ImportError:
        pass

    async def go():
        async with serving(tmp_path, wyoming_settings(zeroconf=True)) as door:
            return await ha_describe(door.port)

    assert asyncio.run(go()).handle
    assert "wyoming.zeroconf is on but the zeroconf package is missing (pip install zeroconf)" in caplog.text
