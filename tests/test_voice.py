"""Voice pipeline with real audio (espeak-ng + sox), real Silero VAD and real faster-whisper tiny.en.

WAV file -> VAD -> wake -> STT -> turn -> tool, on the fast phrase path with the bundled kitchen
skill, and through a real Agent with a scripted model.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from agent.daemon.assembly import apply_skills, core_registry
from agent.config.settings import load_settings
from agent.turn import Agent
from agent.voice.pipeline import VoicePipeline
from agent.voice.sources import Resilient, WavSource
from agent.voice.stt import Guards, Transcript
from agent.voice.tts import CommandSpeaker, SentenceSplitter, SilentSpeaker
from agent.voice.vad import Endpointer, SileroVAD
from agent.voice.wake import Wake
from agent.testkit.scripted_llm import ScriptedLLM
from agent.testkit.speech import need, silence, speech, synth, write
from fakes import SlowTurn

COMMAND = "hey agent, convert two hundred celsius to fahrenheit"


@pytest.fixture
def stt(whisper_stt):
    return whisper_stt


def kitchen_agent(tmp_path, outputs=(), store=None) -> Agent:
    """A real Agent whose fast phrase path has the bundled skills (kitchen among them)."""
    agent = Agent(llm=ScriptedLLM(list(outputs)), registry=core_registry(), system_prompt="You are a test agent.",
                  store=store)
    apply_skills(agent, load_settings(), tmp_path)
    assert agent.intents is not None
    return agent


def pipeline(source, stt, agent, **options) -> VoicePipeline:
    options.setdefault("speaker", SilentSpeaker())
    options.setdefault("respond", lambda text: agent.respond(text, who="voice", thinking=False))
    return VoicePipeline(source=source, endpointer=Endpointer(SileroVAD()), stt=stt,
                         wake=Wake(["hey agent", "okay agent"]), **options)


def run(p: VoicePipeline, **kw):
    return asyncio.run(p.run(**kw))


def commands(reports):
    return [r for r in reports if r.command is not None]


def test_spoken_command_runs_the_kitchen_tool(tmp_path, stt):
    wav = write(tmp_path / "cmd.wav", silence(0.5), speech(COMMAND, tmp_path / "s.wav"), silence(0.3))
    reports = run(pipeline(WavSource(wav), stt, kitchen_agent(tmp_path)))
    [report] = reports
    assert report.command is not None, report.line()
    assert report.command.lower().rstrip(".") == "convert 200 celsius to fahrenheit", report.line()
    assert report.tools == ["convert_units"] and "392" in report.tool_results[0]
    assert "392" in report.reply
    times = report.times
    assert set(times) >= {"transcript", "first_token", "first_tool_done", "first_audio", "done"}
    assert times["transcript"] <= times["first_tool_done"] <= times["done"]
    assert 0.4 <= report.start_s <= 0.6, report.start_s  # the VAD found where the speech began


def test_wake_phrase_alone_then_the_command_then_a_follow_up(tmp_path, stt):
    say = lambda text, name: speech(text, tmp_path / f"{name}.wav")
    wav = write(
        tmp_path / "talk.wav", silence(0.3),
        say("hey agent", "a"), silence(1.0),
        say("convert two hundred celsius to fahrenheit", "b"), silence(1.0),
        say("convert four hundred fahrenheit to celsius", "c"), silence(8.0),  # follow-up: no wake phrase
        say("convert two hundred celsius to fahrenheit", "d"), silence(0.3),  # window closed: ignored
    )
    reports = run(pipeline(WavSource(wav), stt, kitchen_agent(tmp_path), wake_window_s=5, follow_up_s=3))
    assert [r.ignored is None for r in reports] == [False, True, True, False], [r.line() for r in reports]
    assert reports[0].ignored.startswith("wake phrase alone")
    assert "392" in reports[1].tool_results[0] and "204" in reports[2].tool_results[0]
    assert reports[3].ignored == "no wake phrase"


def test_llm_turn_thinking_off_and_reply_spoken_by_sentence(tmp_path, stt):
    agent = kitchen_agent(tmp_path, outputs=["It is a fine day. Take a coat anyway!"])
    speaker = SilentSpeaker()
    wav = write(tmp_path / "q.wav", silence(0.3), speech("hey agent, what is the weather like", tmp_path / "s.wav"), silence(0.3))
    [report] = run(pipeline(WavSource(wav), stt, agent, speaker=speaker))
    assert report.command and report.tools == []
    assert agent.llm.requests[0].thinking is False
    assert speaker.said == ["It is a fine day.", "Take a coat anyway!"]
    assert {"first_token", "first_audio", "done"} <= set(report.times)


def test_the_first_sentence_is_spoken_while_the_model_still_writes(tmp_path, stt):
    from agent.events import ReplyDone, TextDelta

    speaker = SilentSpeaker()
    spoken_before_the_rest = []

    async def respond(text):
        yield TextDelta(text="It is a fine day. Take")
        for _ in range(100):  # the model is still writing; the first sentence should play now
            if speaker.said:
                break
            await asyncio.sleep(0.01)
        spoken_before_the_rest.append(list(speaker.said))
        yield TextDelta(text=" a coat anyway!")
        yield ReplyDone(text="It is a fine day. Take a coat anyway!", stopped_by="done", stats=None)

    wav = write(tmp_path / "q.wav", silence(0.3), speech("hey agent, what is the weather like", tmp_path / "s.wav"), silence(0.3))
    run(pipeline(WavSource(wav), stt, None, speaker=speaker, respond=respond))
    assert spoken_before_the_rest == [["It is a fine day."]]
    assert speaker.said == ["It is a fine day.", "Take a coat anyway!"]


def test_silence_noise_tones_and_speech_without_the_wake_phrase_run_nothing(tmp_path, stt):
    d = tmp_path
    corpus = [
        silence(3.0),
        synth(d / "white.wav", 2.0, "whitenoise", "vol", "0.3"),
        synth(d / "pink.wav", 2.0, "pinknoise", "vol", "0.5"),
        synth(d / "brown.wav", 1.5, "brownnoise"),
        synth(d / "tone.wav", 1.5, "sine", "440"),
        synth(d / "sweep.wav", 1.5, "sine", "300-3000"),
        synth(d / "beeps.wav", 1.0, "square", "1000", "vol", "0.2"),
        speech("the weather is lovely today", d / "s1.wav"), silence(1.0),
        speech("convert two hundred celsius to fahrenheit", d / "s2.wav"), silence(1.0),
        speech("thank you for watching", d / "s3.wav"), silence(1.0),
    ]
    agent = kitchen_agent(tmp_path)
    reports = run(pipeline(WavSource(write(d / "corpus.wav", *corpus)), stt, agent))
    assert commands(reports) == [], [r.line() for r in reports]
    assert reports and all(r.ignored for r in reports)


def test_guards_name_their_reason():
    g = Guards()
    assert "invents" in g.check(Transcript(text="Thank you for watching!"))
    assert "not speech" in g.check(Transcript(text="lights on", no_speech_prob=0.9))
    assert "unsure" in g.check(Transcript(text="lights on", avg_logprob=-1.5))
    assert "repeats" in g.check(Transcript(text="on on on on", compression_ratio=3.0))
    assert g.check(Transcript(text="")) == "nothing was said"
    assert g.check(Transcript(text="turn on the lights", avg_logprob=-0.3)) is None


def test_unplugged_microphone_is_reported_once_and_picked_up_again(tmp_path, stt, caplog):
    wav = write(tmp_path / "cmd.wav", silence(0.5), speech(COMMAND, tmp_path / "s.wav"), silence(0.3))
    opened = []

    class Unplugged:
        name = "microphone 'USB'"

        async def frames(self):
            for _ in range(3):
                yield np.zeros(512, np.float32)
            raise OSError("device unplugged")

    class Missing:
        name = "microphone 'USB'"

        async def frames(self):
            raise OSError("no such device")
            yield  # an async generator

    def open_source():
        opened.append(len(opened))
        return [Unplugged(), Missing(), Missing()][len(opened) - 1] if len(opened) <= 3 else WavSource(wav)

    source = Resilient(open_source, first_retry_s=0.01, retry_max_s=0.05)
    with caplog.at_level(logging.INFO, logger="agent.voice.sources"):
        reports = run(pipeline(source, stt, kitchen_agent(tmp_path)))
    assert len(opened) == 4 and source.losses == 1
    assert [r.message for r in caplog.records if "unplugged" in r.message or "no such" in r.message] == [
        "microphone 'USB': device unplugged; retrying (every 0 s at most) until it is back"]
    assert any("is back" in r.message for r in caplog.records)
    assert [r.tools for r in commands(reports)] == [["convert_units"]]


def test_stop_cuts_the_spoken_reply_short(tmp_path, stt):
    class Slow:
        name = "slow"
        cancelled = False

        async def speak(self, text):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                Slow.cancelled = True
                raise

    wav = write(tmp_path / "stop.wav", silence(0.3), speech(COMMAND, tmp_path / "a.wav"), silence(0.6),
                speech("hey agent, stop", tmp_path / "b.wav"), silence(0.3))
    reports = asyncio.run(asyncio.wait_for(pipeline(WavSource(wav), stt, kitchen_agent(tmp_path), speaker=Slow()).run(), 20))
    assert Slow.cancelled
    assert reports[1].stop and reports[1].ignored.startswith("asked to stop")


def test_speech_program_is_killed_when_cancelled():
    need("sleep")
    speaker = CommandSpeaker(["sh", "-c", "sleep 30"], "sh")  # the text lands in $0, unused

    async def go():
        task = asyncio.create_task(speaker.speak("a long reply"))
        await asyncio.sleep(0.2)
        task.cancel()
        start = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.CancelledError):
            await task
        return asyncio.get_running_loop().time() - start

    assert asyncio.run(go()) < 1.0


def test_espeak_ng_speaks_a_sentence():
    need("espeak-ng")
    speaker = CommandSpeaker(["espeak-ng", "-w", "/dev/null"], "espeak-ng")
    asyncio.run(speaker.speak("Done."))  # exits 0; a failure would be logged, not raised


def test_sentences_split_as_the_reply_streams():
    s = SentenceSplitter()
    assert s.add("It is 20 de") == [] and s.add("grees. Take a") == ["It is 20 degrees."]
    assert s.add(" coat!\nBye") == ["Take a coat!"] and s.rest() == ["Bye"]


# -- the daemon's microphone door ---------------------------------------------------------------


def test_the_door_runs_commands_as_voice_turns_keeps_them_and_tells_chat_windows(tmp_path, stt):
    from agent.ipc import Client
    from agent.config.settings import load_settings as settings_
    from agent.store import Store
    from agent.voice.door import VoiceDoor
    from agent.voice.service import daemon_respond
    from fakes import make, running, until

    wav = write(tmp_path / "talk.wav", silence(0.3), speech("the weather is lovely today", tmp_path / "a.wav"),
                silence(0.8), speech(COMMAND, tmp_path / "b.wav"), silence(0.3))
    store = Store(tmp_path / "agentd.db")
    agent = kitchen_agent(tmp_path, store=store)
    home = tmp_path / "home"
    home.mkdir()

    async def go():
        async with running(make(home, agent)) as daemon:
            async with await Client.connect(daemon.socket_path) as client:
                door = VoiceDoor(daemon, settings_().voice, store=store,
                                 pipeline=pipeline(WavSource(wav), stt, agent, respond=daemon_respond(daemon)))
                await door.serve()
                await client.status()  # the notices sent before this reply have arrived
                await until(lambda: len(client.notices) == 2)
                return door.status(), [n.text for n in client.notices]

    status, notices = run_async(go())
    ignored, ran = store.utterances()[::-1]
    assert ignored.ignored == "no wake phrase" and ran.command.lower().startswith("convert 200 celsius")
    assert ran.tools == ["convert_units"] and "392" in ran.reply
    assert {"transcript", "first_tool_done", "done"} <= set(ran.times)
    assert notices[0].startswith("heard") and "ignored (no wake phrase)" in notices[0]
    assert "convert_units" in notices[1]
    summary = status["voice"]
    assert summary["utterances"] == 2 and summary["commands"] == 1
    assert summary["median_ms"]["transcript"] == round(ran.times["transcript"])
    assert store.audit_entries()[0].who == "voice"  # the turn ran as the voice door


def test_the_door_speaks_announcements_that_ask_for_it(tmp_path, stt):
    from agent.schedule.spec import Announcement
    from agent.config.settings import load_settings as settings_
    from agent.voice.door import VoiceDoor
    from datetime import datetime

    speaker = SilentSpeaker()

    class Daemon:
        told = []

        def announce(self, a):
            self.told.append(a.text)
            return False  # nobody connected

    door = VoiceDoor(Daemon(), settings_().voice, pipeline=pipeline(WavSource(__file__), stt, None, speaker=speaker))

    async def go():
        now = datetime.now()
        quiet = door.announce(Announcement(job_id="a", kind="reminder", text="Water the plants", speak=False, scheduled=now))
        loud = door.announce(Announcement(job_id="b", kind="reminder", text="Take the cake out", speak=True, scheduled=now))
        await asyncio.sleep(0.05)
        return quiet, loud

    assert run_async(go()) == (False, True)  # spoken counts as heard, so the reminder is not "unheard"
    assert Daemon.told == ["Water the plants", "Take the cake out"] and speaker.said == ["Take the cake out"]


def test_voice_is_off_with_the_reason_when_the_speech_model_cannot_load(tmp_path):
    from agent.config.settings import load_settings as settings_
    from agent.voice.door import VoiceDoor
    from agent.voice.stt import WhisperSTT

    door = VoiceDoor(object(), settings_().voice,
                     pipeline=pipeline(WavSource(__file__), WhisperSTT(str(tmp_path / "no-model")), None))
    run_async(door.serve())
    assert "cannot load speech model" in door.status()["voice"]["off"]
    assert "no-model" in door.status()["voice"]["off"]


def run_async(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_stop_cancels_the_running_turn_too(tmp_path, stt):
    """The handler keeps hearing while a turn runs, so "hey agent, stop" reaches it."""
    slow_turn = SlowTurn()
    wav = write(tmp_path / "stop.wav", silence(0.3), speech(COMMAND, tmp_path / "a.wav"), silence(0.6),
                speech("hey agent, stop", tmp_path / "b.wav"), silence(0.3))
    p = pipeline(WavSource(wav), stt, None, respond=slow_turn, follow_up_s=0)
    reports = asyncio.run(asyncio.wait_for(p.run(), 30))
    stop = next(r for r in reports if r.stop)
    assert "turn" in stop.ignored, stop.ignored
    command = next(r for r in reports if r.command)
    assert command.times["done"] < 10_000  # cut short, not the 30 s the reply would take
    # From the stop being understood to the turn having ended: no waiting on the turn's pace.
    assert stop.times["stopped"] - stop.times["transcript"] < 200, stop.times
    assert slow_turn.ended_at is not None


def test_the_door_takes_new_house_words_after_a_reload():
    from agent.config.settings import load_settings as settings_
    from agent.voice.door import VoiceDoor
    from agent.voice.stt import WhisperSTT
    from agent.testkit.speech import whisper_model

    voice = settings_().voice
    stt = WhisperSTT(whisper_model(), hints=voice.wake_phrases)  # not loaded: only its options are read
    door = VoiceDoor(object(), voice, pipeline=pipeline(WavSource(__file__), stt, None))
    assert "porch light" not in (stt.options()["initial_prompt"] or "")
    door.use_words(["porch light", "attic"])
    prompt = stt.options()["initial_prompt"]
    assert "porch light" in prompt and "attic" in prompt and voice.wake_phrases[0] in prompt
