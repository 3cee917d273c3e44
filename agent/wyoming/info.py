"""What agentd tells Home Assistant it offers (`describe` -> `info`).

Home Assistant makes one entity per kind of program the info lists as installed: speech to
text (`asr`), text to speech (`tts`, with its voices) and a conversation agent (`handle`).
A part that cannot run here (no speech model, no speech program) is left out, so Home
Assistant never offers something that would fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from wyoming.info import AsrModel, AsrProgram, Attribution, HandleModel, HandleProgram, Info, TtsProgram, TtsVoice

from agent.wyoming.tts import VoiceInfo

NAME = "agentd"
AGENTD = Attribution(name="agentd", url="")


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("agentd")
    except PackageNotFoundError:
        return None


def asr_languages(model: str, language: str | None) -> list[str]:
    """The languages the speech model takes: the configured one, English for an .en model,
    else every language Whisper knows."""
    if language and language != "auto":
        return [language]
    if Path(model).name.endswith(".en") or Path(model).name.endswith("-en"):
        return ["en"]
    from agent.voice.stt import whisper_languages

    return list(whisper_languages())


def describe(*, stt_model: str | None, stt_language: str | None, speech_program: str | None,
             voices: Sequence[VoiceInfo], agent_name: str = NAME) -> Info:
    """The `info` answer; a part given as None is not offered."""
    ver = version()
    info = Info()
    if stt_model is not None:
        model = AsrModel(name=Path(stt_model).name, description=f"faster-whisper {Path(stt_model).name}",
                         attribution=Attribution(name="faster-whisper", url="https://github.com/SYSTRAN/faster-whisper"),
                         installed=True, version=None, languages=asr_languages(stt_model, stt_language))
        info.asr = [AsrProgram(name=NAME, description="agentd speech to text (faster-whisper)", attribution=AGENTD,
                               installed=True, version=ver, models=[model])]
    if speech_program is not None and voices:
        info.tts = [TtsProgram(
            name=NAME, description=f"agentd speech ({speech_program})", attribution=AGENTD, installed=True, version=ver,
            voices=[TtsVoice(name=v.name, description=v.description, attribution=AGENTD, installed=True, version=None,
                             languages=list(v.languages)) for v in voices],
            supports_synthesize_streaming=True,  # spoken sentence by sentence as the text arrives
        )]
    # No languages: Home Assistant then offers the agent for every language (the model decides).
    handle = HandleModel(name=agent_name, description="the agent's turn: tools, skills, home control",
                         attribution=AGENTD, installed=True, version=ver, languages=[])
    info.handle = [HandleProgram(name=NAME, description="agentd, the home agent", attribution=AGENTD,
                                 installed=True, version=ver, models=[handle], supports_home_control=True)]
    return info
