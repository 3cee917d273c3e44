"""The real microphone path: PortAudio (libportaudio2) -> sounddevice -> the pipeline -> a tool.

With no sound card, an ALSA `file` plugin is the capture device: an `.asoundrc` (in a fresh
HOME, in a subprocess so this process's PortAudio is untouched) reads raw s16 samples from a
file, and its playback side appends what espeak-ng says to another file (espeak-ng reopens the
device when it finishes, which would otherwise truncate it). ALSA's `null` slave
runs faster than real time; MicSource's backpressure paces it to the pipeline.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speech import need, s16, silence, speech, whisper_model

ROOT = Path(__file__).resolve().parent.parent

ASOUNDRC = """
pcm.!default {{ type asym; capture.pcm "mic"; playback.pcm "speaker" }}
pcm.mic {{ type plug; slave {{ pcm "micfile"; format S16_LE; rate 16000; channels 1 }} }}
pcm.micfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "{infile}"; format "raw" }}
pcm.speaker {{ type plug; slave {{ pcm "spkfile"; format S16_LE; rate 16000; channels 1 }} }}
pcm.spkfile {{ type file; slave.pcm "null"; file "{outfile}"; format "raw"; truncate false }}
"""

CHILD = r"""
import asyncio, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
from agent.app import apply_skills, core_registry
from agent.settings import load_settings
from agent.turn import Agent
from agent.voice.pipeline import VoicePipeline
from agent.voice.sources import MicSource, Resilient
from agent.voice.stt import WhisperSTT
from agent.voice.tts import make_speaker
from agent.voice.vad import Endpointer, SileroVAD
from agent.voice.wake import Wake
from agent.voice.service import devices_command
from scripted_llm import ScriptedLLM

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
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("PortAudio not installed (apt-get install libportaudio2)")
    if not Path("/usr/lib/x86_64-linux-gnu/alsa-lib").exists() and not list(Path("/usr/lib").glob("*/alsa-lib")):
        pytest.skip("ALSA plugins not installed (apt-get install libasound2-plugins)")
    model = whisper_model()
    infile, outfile = tmp_path / "mic.raw", tmp_path / "speaker.raw"
    audio = [silence(1.0), speech("the weather is lovely today", tmp_path / "a.wav"), silence(1.0),
             speech("hey agent, convert five hundred grams to pounds", tmp_path / "b.wav"), silence(1.0)]
    infile.write_bytes(b"".join(s16(a) for a in audio))
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(infile=infile, outfile=outfile))
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
