"""Voice wiring: the pipeline built from settings, the ways a command reaches an agent, and
the `agentd listen` / `agentd devices` commands (the daemon's side is agent.voice.door).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

from agent.voice.pipeline import Respond, UtteranceReport, VoicePipeline
from agent.voice.sources import AudioSource, MicSource, Resilient, WavSource, rescan_devices
from agent.voice.stt import Guards, WhisperSTT
from agent.voice.tts import Speaker, make_speaker
from agent.voice.vad import Endpointer, SileroVAD
from agent.voice.wake import Wake

log = logging.getLogger(__name__)

Confirm = Callable[[Any, dict], Awaitable[bool]]  # (tool, arguments) -> yes?, e.g. VoicePipeline.confirm


def build_pipeline(voice: Any, *, respond: Respond, source: AudioSource | None = None, stt: Any = None,
                   speaker: Speaker | None = None, hints: Iterable[str] = (), models_dir: Path | None = None,
                   on_report: Callable[[UtteranceReport], None] | None = None, language: str = "en") -> VoicePipeline:
    """A pipeline from the `voice` settings section, speaking the top-level `language`; the
    microphone unless `source` is given."""
    from agent.languages import language as language_of

    endpointer = Endpointer(SileroVAD(), threshold=voice.vad_threshold, end_silence_ms=voice.end_silence_ms,
                            min_speech_ms=voice.min_speech_ms, max_utterance_s=voice.max_utterance_s)
    return VoicePipeline(
        source=source or mic_source(voice), endpointer=endpointer, respond=respond, guards=voice_guards(voice),
        stt=stt if stt is not None else voice_stt(voice, hints=hints, models_dir=models_dir),
        wake=Wake(voice.wake_phrases, similarity=voice.wake_similarity),
        speaker=speaker or make_speaker(voice.tts, voice=voice.tts_voice, rate=voice.tts_rate, device=voice.output_device,
                                        language=language),
        mode=voice.wake_mode, wake_window_s=voice.wake_window_s, follow_up_s=voice.follow_up_s,
        confirm_window_s=voice.confirm_window_s, on_report=on_report, language=language_of(language),
    )


def voice_stt(voice: Any, *, hints: Iterable[str] = (), models_dir: Path | None = None) -> WhisperSTT:
    """faster-whisper as the `voice` section sets it up (not loaded yet)."""
    words = [*voice.wake_phrases, *hints] if voice.stt_hints else []
    return WhisperSTT(voice.stt_model, compute_type=voice.stt_compute_type, threads=voice.stt_threads,
                      beam_size=voice.stt_beam_size, language=voice.stt_language, hints=words, models_dir=models_dir)


def voice_guards(voice: Any) -> Guards:
    """When a transcript is not trusted, from the `voice` section."""
    return Guards(voice.min_avg_logprob, voice.max_no_speech_prob, voice.max_compression_ratio,
                  tuple(voice.ignore_phrases))


def mic_source(voice: Any) -> Resilient:
    """The configured microphone, reopened (after a device rescan) whenever it goes away."""
    return Resilient(lambda: MicSource(voice.input_device), retry_max_s=voice.retry_max_s, on_retry=rescan_devices)


def agent_respond(agent: Any, confirm: Confirm | None = None) -> Respond:
    """Turns run by an Agent in this process, thinking off (a spoken command wants speed);
    `confirm` (a pipeline's, to ask aloud) decides confirm-tier tools, else they are denied."""
    return lambda text: agent.respond(text, who="voice", thinking=False, confirm=confirm)


def daemon_respond(daemon: Any, confirm: Confirm | None = None) -> Respond:
    """Turns queued on the daemon as the `voice` door (the highest priority), thinking off;
    `confirm` as for agent_respond."""
    return lambda text: daemon.submit(text, who="voice", thinking=False, confirm=confirm)


def socket_respond(socket_path: Path | str) -> Respond:
    """Turns sent to a running daemon over its socket; confirmations are denied (no screen)."""
    from agent.ipc import Client
    from agent.ipc.protocol import ConfirmRequest

    async def respond(text: str) -> AsyncIterator[Any]:
        async with await Client.connect(socket_path) as client:
            rid = client.new_id()
            async for event in client.reply(text, thinking=False, request_id=rid):
                if isinstance(event, ConfirmRequest):
                    await client.answer(rid, False)
                else:
                    yield event

    return respond


def hear_once(voice: Any, *, models_dir: Path | None = None, source: AudioSource | None = None,
              timeout_s: float = 15.0, language: str = "en") -> Callable[[], Any]:
    """Push-to-talk for a chat window: `await hear()` is the next utterance from the microphone
    as text (no wake phrase needed), or None if nothing was said within `timeout_s`."""
    from agent.events import ReplyDone
    from agent.voice.tts import SilentSpeaker

    loaded: dict = {}

    async def hear() -> str | None:
        said: list[str] = []

        async def keep(text: str) -> AsyncIterator[Any]:
            said.append(text)
            yield ReplyDone(text="", stopped_by="done")

        pipeline = build_pipeline(voice, respond=keep, source=source, stt=loaded.get("stt"), models_dir=models_dir,
                                  speaker=SilentSpeaker(), language=language)
        loaded["stt"] = stt = pipeline.stt  # the speech model is loaded once per chat window
        await stt.aload()
        try:
            async with asyncio.timeout(timeout_s):
                await pipeline.run(once=True, push=True)
        except TimeoutError:
            return None
        return said[0] if said else None

    return hear


def listen_command(args: argparse.Namespace, *, voice: Any, respond: Respond, hints: Iterable[str] = (),
                   models_dir: Path | None = None, out=None, language: str = "en") -> int:
    """`agentd listen [--wav FILE] [--once] [--realtime]`: the pipeline, each stage printed with its time."""
    out = out or sys.stdout
    wav = getattr(args, "wav", None)
    source = WavSource(wav, realtime=getattr(args, "realtime", False)) if wav else None
    if wav is None and voice.wake_mode != "always":
        log.info("listening; say a command (no wake phrase needed with --once)")

    def show(report: UtteranceReport) -> None:
        print(f"[{report.start_s:6.2f}-{report.end_s:6.2f} s] heard: {report.heard!r}", file=out)
        for stage, ms in report.times.items():
            print(f"    {stage:16} {ms:8.0f} ms after end of speech", file=out)
        if report.ignored:
            print(f"    ignored: {report.ignored}", file=out)
        else:
            print(f"    command: {report.command!r}  tools: {', '.join(report.tools) or '-'}", file=out)
            print(f"    reply:   {report.reply!r}", file=out)
        out.flush()

    try:
        pipeline = build_pipeline(voice, respond=respond, source=source, hints=hints, models_dir=models_dir,
                                  on_report=show, language=language)
        start = time.perf_counter()
        pipeline.stt.load()
        print(f"speech model loaded in {time.perf_counter() - start:.2f} s", file=out)
        once = getattr(args, "once", False)
        reports = asyncio.run(pipeline.run(once=once, push=once or voice.wake_mode == "push"))
    except (OSError, ValueError) as exc:
        print(f"agentd listen: {exc}", file=sys.stderr)
        return 1
    return 0 if any(r.command for r in reports) or not getattr(args, "once", False) else 1


def devices_command(args: argparse.Namespace | None = None, *, out=None) -> int:
    """`agentd devices`: the audio inputs and outputs sounddevice sees, defaults marked."""
    out = out or sys.stdout
    try:
        import sounddevice as sd

        devices = sd.query_devices()
        default_in, default_out = sd.default.device
    except (OSError, ImportError) as exc:
        print(f"agentd devices: no audio system: {exc} (on Linux: apt-get install libportaudio2)", file=sys.stderr)
        return 1
    for kind, channels, default in (("inputs", "max_input_channels", default_in), ("outputs", "max_output_channels", default_out)):
        print(f"{kind}:", file=out)
        found = [d for d in devices if d[channels] > 0]
        for d in found:
            mark = "*" if d["index"] == default else " "
            print(f" {mark} {d['index']:3}  {d['name']}  ({d[channels]} ch, {d['default_samplerate']:.0f} Hz)", file=out)
        if not found:
            print("    (none)", file=out)
    return 0
