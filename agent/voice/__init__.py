"""The microphone door: audio sources, VAD and endpointing, wake phrase, STT, TTS.

    source (mic or WAV) -> Endpointer (Silero VAD) -> WhisperSTT -> guards -> Wake -> respond -> Speaker

`VoicePipeline` (agent.voice.pipeline) joins the parts; `VoiceDoor` (agent.voice.door) runs
it inside the daemon, `listen_command` / `devices_command` are the `agentd listen` /
`agentd devices` commands. Heavy imports (faster_whisper, sounddevice, onnxruntime) happen inside the parts.
"""

from agent.voice.pipeline import UtteranceReport, VoicePipeline
from agent.voice.service import build_pipeline, devices_command, listen_command

__all__ = ["UtteranceReport", "VoicePipeline", "build_pipeline", "devices_command", "listen_command"]
