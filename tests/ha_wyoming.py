"""Home Assistant's side of the Wyoming protocol, as its wyoming integration writes it
(homeassistant/components/wyoming: data.py, stt.py, tts.py, conversation.py), with the
`wyoming` library as the client, over 127.0.0.1. Each function names the code it mirrors."""

from __future__ import annotations

import asyncio
import io
import wave

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

HOST = "127.0.0.1"
HA_CHUNK_BYTES = 2048  # Home Assistant forwards the satellite's audio in small pieces


async def ha_describe(port: int, retries: int = 40) -> Info:
    """data.load_wyoming_info: describe -> info, tried again while nothing listens yet (Home
    Assistant waits 2 s between tries; here a quarter of that)."""
    for _ in range(retries):
        try:
            async with AsyncTcpClient(HOST, port) as client, asyncio.timeout(5):
                await client.write_event(Describe().event())
                while True:
                    event = await client.read_event()
                    assert event is not None, "connection closed before info"
                    if Info.is_type(event.type):
                        return Info.from_event(event)
        except OSError:
            await asyncio.sleep(0.5)
    raise AssertionError(f"nothing answered describe on port {port}")


async def ha_transcribe(port: int, audio: bytes, *, rate=16000, width=2, channels=1, language="en") -> str | None:
    """stt.async_process_audio_stream: transcribe, audio-start, audio-chunk..., audio-stop -> transcript."""
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        for start in range(0, len(audio), HA_CHUNK_BYTES):
            chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=audio[start:start + HA_CHUNK_BYTES])
            await client.write_event(chunk.event())
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                return None  # Home Assistant: SpeechResultState.ERROR
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text


async def ha_synthesize(port: int, text: str, voice: str | None = None) -> tuple[list[str], bytes | None]:
    """tts.async_get_tts_audio: synthesize -> audio chunks until audio-stop, written to a WAV.
    (The event types in order, the WAV; None where Home Assistant gives up.)"""
    types: list[str] = []
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice) if voice else None).event())
        with io.BytesIO() as wav_io:
            writer = None
            while True:
                event = await client.read_event()
                if event is None:
                    return types, None
                types.append(event.type)
                if AudioStop.is_type(event.type):
                    break
                if AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    if writer is None:
                        writer = wave.open(wav_io, "wb")
                        writer.setframerate(chunk.rate)
                        writer.setsampwidth(chunk.width)
                        writer.setnchannels(chunk.channels)
                    writer.writeframes(chunk.audio)
            if writer is not None:
                writer.close()
            return types, wav_io.getvalue()


async def ha_stream_synthesize(port: int, pieces: list[str]) -> tuple[list[str], tuple, bytes]:
    """tts.async_stream_tts_audio (Home Assistant 2025.7+, for a server that supports streaming):
    one task writes synthesize-start, the text as it arrives, the whole text again as a plain
    synthesize (for old servers), synthesize-stop; meanwhile the audio is read, its format
    from the first audio-start, until synthesize-stopped. (Event types, format, samples.)"""
    client = AsyncTcpClient(HOST, port)
    await client.connect()

    async def write() -> None:
        await client.write_event(SynthesizeStart(voice=None).event())
        for piece in pieces:
            await client.write_event(SynthesizeChunk(text=piece).event())
        await client.write_event(Synthesize(text="".join(pieces), voice=None).event())
        await client.write_event(SynthesizeStop().event())

    writer = asyncio.create_task(write())
    types, fmt, audio = [], None, b""
    try:
        while event := await client.read_event():
            types.append(event.type)
            if fmt is not None and AudioChunk.is_type(event.type):
                audio += AudioChunk.from_event(event).audio
            elif fmt is None and AudioStart.is_type(event.type):
                start = AudioStart.from_event(event)
                fmt = (start.rate, start.width, start.channels)
            elif SynthesizeStopped.is_type(event.type):
                break
        await writer
    finally:
        await client.disconnect()
    return types, fmt, audio


async def ha_converse(port: int, text: str, conversation_id: str, language: str = "en") -> Handled | NotHandled:
    """conversation.async_process: a transcript with its context -> handled / not-handled."""
    context = {"conversation_id": conversation_id, "device_id": "voice-pe-kitchen"}
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Transcript(text, context=context, language=language).event())
        while True:
            event = await client.read_event()
            assert event is not None, "connection lost"
            assert not Error.is_type(event.type), Error.from_event(event).text
            if Handled.is_type(event.type):
                return Handled.from_event(event)
            if NotHandled.is_type(event.type):
                return NotHandled.from_event(event)
