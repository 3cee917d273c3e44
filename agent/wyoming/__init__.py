"""agentd inside Home Assistant's Assist, over the Wyoming protocol (`wyoming.enabled`).

One TCP server offers three things, each of which Home Assistant's Wyoming integration turns
into an entity: speech to text (agentd's faster-whisper), text to speech (its speech program,
as PCM) and a conversation agent (the agent's turn). See `server` for the events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from agent.wyoming.server import WyomingDoor, WyomingListenError

__all__ = ["WyomingDoor", "WyomingListenError", "wyoming_door"]


def wyoming_door(daemon: Any, settings: Any, *, stt: Any = None, hints: Iterable[str] = (),
                 models_dir: Path | None = None) -> WyomingDoor:
    """The door from settings; `stt` shares the voice door's speech model when it has one."""
    from agent.voice.service import voice_guards, voice_stt
    from agent.voice.stt import ModelNotFound
    from agent.wyoming.tts import SpeechError, make_wav_speech

    door = WyomingDoor(daemon, settings, guards=voice_guards(settings.voice))
    voice = settings.voice
    try:
        door.stt = stt if stt is not None else voice_stt(voice, hints=hints, models_dir=models_dir)
    except ModelNotFound as exc:
        door.problems.append(f"speech to text is off: {exc}")
    try:
        door.speech = make_wav_speech(voice.tts, voice=voice.tts_voice, rate=voice.tts_rate, language=settings.language)
    except SpeechError as exc:
        door.problems.append(f"speech is off: {exc}")
    return door
