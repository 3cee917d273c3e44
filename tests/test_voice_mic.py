"""The real microphone path: PortAudio (libportaudio2) -> sounddevice -> the pipeline -> a tool.

With no sound card, an ALSA `file` plugin is the capture device: an `.asoundrc` (in a fresh
HOME, in a subprocess so this process's PortAudio is untouched) reads raw s16 samples from a
file, and its playback side appends what espeak-ng says to another file (espeak-ng reopens the
device when it finishes, which would otherwise truncate it). ALSA's `null` slave
runs faster than real time; MicSource's backpressure paces it to the pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from agent.testkit.speech import alsa_file_device, need, silence, speech, whisper_model

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys, tempfile
from pathlib import Path
from agent.daemon.assembly import apply_skills, core_registry
from agent.config.settings import load_settings
from agent.turn import Agent
from agent.voice.pipeline import VoicePipeline
from agent.voice.sources import MicSource, Resilient
from agent.voice.stt import WhisperSTT
from agent.voice.tts import make_speaker
from agent.voice.vad import Endpointer, SileroVAD
from agent.voice.wake import Wake
from agent.voice.service import devices_command
from agent.testkit.scripted_llm import ScriptedLLM

devices_command()
agent = Agent(llm=ScriptedLLM(["Sorry?"] * 5), registry=core_registry(), system_prompt="test")
apply_skills(agent, load_settings(), Path(tempfile.mkdtemp()))
mics = []
source = Resilient(lambda: mics.append(MicSource(None)) or mics[-1])
p = VoicePipeline(source=source, endpointer=Endpointer(SileroVAD()), stt=WhisperSTT(sys.argv[1], hints=["hey agent", *agent.intents.vocabulary()]),
                  respond=lambda t: agent.respond(t, who="voice", thinking=False), wake=Wake(["hey agent"]),
                  speaker=make_speaker("espeak-ng"))
reports = asyncio.run(asyncio.wait_for(p.run(once=True), 120))
print("dropped blocks:", sum(m.dropped for m in mics), file=sys.stderr)
print(json.dumps([{"heard": r.heard, "command": r.command, "ignored": r.ignored, "tools": r.tools,
                   "results": r.tool_results, "times": r.times} for r in reports]))
"""


def test_spoken_command_through_a_real_capture_device(tmp_path):
    need("espeak-ng", "sox")
    model = whisper_model()
    audio = [silence(1.0), speech("the weather is lovely today", tmp_path / "a.wav"), silence(1.0),
             speech("hey agent, convert five hundred grams to pounds", tmp_path / "b.wav"), silence(1.0)]
    outfile = alsa_file_device(tmp_path, audio)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-c", CHILD, model], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "inputs:" in lines and any("default" in line for line in lines)  # `agentd devices`
    reports = json.loads(lines[-1])
    assert [r["ignored"] for r in reports[:-1]] == ["no wake phrase"], reports
    last = reports[-1]
    assert last["command"].lower().rstrip(".") == "convert 500 grams to pounds", (reports, done.stderr[-400:])
    assert last["tools"] == ["convert_units"] and "1.1" in last["results"][0], last["results"]
    assert {"transcript", "first_tool_done", "first_audio"} <= set(last["times"])
    assert outfile.exists() and outfile.stat().st_size > 16000, "espeak-ng spoke nothing to the ALSA device"


def test_the_daemon_hears_a_spoken_command_and_runs_it(tmp_path, monkeypatch, tiny_qwen_bpe):
    """`agentd run` with voice.enabled, on the ALSA file microphone: the command's tool shows up in
    the audit log as a voice turn, and `agentd status` reports the voice door's stage times."""
    from agent.ipc import status_sync
    from agent.store import Store
    from daemon_proc import RealDaemon, short_home

    need("espeak-ng", "sox")
    whisper_model()
    alsa_file_device(tmp_path, [silence(1.0), speech("hey agent, convert five hundred grams to pounds",
                                                     tmp_path / "b.wav"), silence(2.0)])
    monkeypatch.setenv("HOME", str(tmp_path))  # where PortAudio finds .asoundrc
    home = short_home()
    config = home / "voice.yaml"
    config.write_text("voice:\n  enabled: true\n  tts: none\n")
    daemon = RealDaemon(home, config, tiny_qwen_bpe)  # the phrase path answers; the model is never asked
    try:
        daemon.start()
        with Store(home / "agentd.db") as store:
            deadline = time.monotonic() + 90
            while not [e for e in store.audit_entries() if e.tool == "convert_units"]:
                assert time.monotonic() < deadline, daemon.output()
                time.sleep(0.2)
            call = next(e for e in store.audit_entries() if e.tool == "convert_units")
            heard = store.utterances()
        assert call.who == "voice" and call.arguments["amount"] == 500, call
        assert any(u.command and u.tools == ["convert_units"] for u in heard), heard
        voice = status_sync(daemon.socket)["voice"]
        assert voice["commands"] >= 1 and "transcript" in voice["median_ms"], voice
    finally:
        daemon.close()


def test_push_to_talk_in_the_chat_window(tmp_path, monkeypatch):
    """`/listen` in `agentd chat`: one utterance from the microphone is sent as the message."""
    from fakes import spawn

    need("espeak-ng", "sox")
    whisper_model()
    alsa_file_device(tmp_path, [silence(0.5), speech("convert five hundred grams to pounds", tmp_path / "a.wav"),
                                silence(2.0)])
    home = tmp_path / "h"
    home.mkdir(mode=0o700)
    daemon, _ = spawn(home, "5")  # a scripted daemon: it answers with the words it was sent
    code = ("import sys; from agent.tui import run_chat; from agent.config.settings import load_settings; "
            "from agent.voice.service import hear_once; "
            f"sys.exit(run_chat({str(home / 'agentd.sock')!r}, hear=hear_once(load_settings().voice)))")
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "TERM": "xterm", "HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    chat = pexpect.spawn(sys.executable, ["-c", code], cwd=str(ROOT), encoding="utf-8", timeout=60,
                         dimensions=(40, 120), env=env)
    try:
        chat.expect("you ›")
        chat.sendline("/listen")
        chat.expect("listening")
        chat.expect(r"you \(spoken\) › ([^\r\n]+)")
        assert "convert 500 grams to pounds" in chat.match.group(1).lower()  # spoken numbers as digits
        chat.expect("tok/s")  # the daemon's reply to the spoken message came back
        chat.expect("you ›")
        chat.sendeof()
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
        daemon.terminate()
        daemon.wait(10)
