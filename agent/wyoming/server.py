"""The Wyoming door: a TCP server Home Assistant connects to, one handler per connection.

    describe                                   -> info (asr, tts, handle)
    transcribe, audio-start, audio-chunk..., audio-stop -> transcript
    synthesize                                 -> audio-start, audio-chunk..., audio-stop
    synthesize-start, synthesize-chunk..., synthesize-stop
                -> per finished sentence: audio-start, audio-chunk..., audio-stop; then synthesize-stopped
    transcript (context: conversation_id)      -> handled (or not-handled)
    ping                                       -> pong

A request that cannot be served gets an `error` event with one line saying why, and the
connection is closed (Home Assistant then reports the failure rather than waiting).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from agent.languages import primary
from agent.voice.tts import SentenceSplitter
from agent.wyoming.asr import Recording, TooMuchAudio
from agent.wyoming.handle import Conversations, handle_transcript
from agent.wyoming.info import describe
from agent.wyoming.tts import SpeechError, WavSpeech

log = logging.getLogger(__name__)

SAMPLES_PER_CHUNK = 1024  # as Wyoming's own speech servers send them
MAX_AUDIO_S = 60  # a stream that never stops (a stuck satellite) is cut off, not kept in memory


class WyomingListenError(OSError):
    """The Wyoming server cannot listen on its address; the message names it."""


class WyomingDoor:
    """agentd's speech to text, speech and agent, offered to Home Assistant over Wyoming."""

    def __init__(self, daemon: Any, settings: Any, *, stt: Any = None, speech: WavSpeech | None = None,
                 guards: Any = None):
        self.daemon, self.settings = daemon, settings
        self.stt, self.speech, self.guards = stt, speech, guards
        self.conversations = Conversations(getattr(daemon, "new_conversation", None))
        self.info_event: Event | None = None
        self.port: int | None = None  # set once listening
        self.problems: list[str] = []
        self._server: AsyncTcpServer | None = None

    async def prepare(self) -> None:
        """Load the speech model and list the voices; a part that fails is left out of `info`."""
        if self.stt is not None:
            try:
                await self.stt.aload()
            except Exception as exc:  # no model: the other parts still serve
                self.problems.append(f"speech to text is off: {exc}")
                self.stt = None
        voices = []
        if self.speech is not None:
            try:
                voices = await self.speech.voices()
            except SpeechError as exc:
                self.problems.append(f"speech is off: {exc}")
                self.speech = None
        for problem in self.problems:
            log.error("wyoming: %s", problem)
        self.info_event = describe(
            # No stt_model: the bundled tiny.en, whose folder is just called "model".
            stt_model=(self.settings.voice.stt_model or "tiny.en") if self.stt is not None else None,
            stt_language=self.settings.voice.stt_language, speech_program=self.speech.program if self.speech else None,
            voices=voices, agent_name=self.settings.agent.name,
        ).event()

    async def start(self) -> None:
        """Listen on `wyoming.host`:`wyoming.port` (returns once listening)."""
        if self.info_event is None:
            await self.prepare()
        host, port = self.settings.wyoming.host, self.settings.wyoming.port
        # start(), not run(): run() takes over SIGTERM, which is the daemon's to handle.
        self._server = AsyncTcpServer(host, port)
        try:
            await self._server.start(lambda reader, writer: WyomingHandler(reader, writer, self))
        except OSError as exc:
            raise WyomingListenError(f"wyoming: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = port
        log.info("wyoming: serving Home Assistant on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def serve(self) -> None:
        """The daemon's `wyoming` service: listen (and announce, if asked) until stopped."""
        await self.start()
        announcer = await self._announce() if self.settings.wyoming.zeroconf else None
        try:
            await asyncio.Event().wait()
        finally:
            if announcer is not None:  # wyoming's helper has no close of its own
                await announcer._aiozc.async_close()
            await self.stop()

    async def _announce(self) -> Any:
        try:
            from wyoming.zeroconf import HomeAssistantZeroconf
        except ImportError:
            log.error("wyoming.zeroconf is on but the zeroconf package is missing (pip install zeroconf)")
            return None
        host = self.settings.wyoming.host
        announcer = HomeAssistantZeroconf(port=self.port, name="agentd",
                                          host=None if host in ("0.0.0.0", "::") else host)
        await announcer.register_server()
        return announcer

    def status(self) -> dict:
        """For `agentd status`."""
        report: dict = {"address": f"{self.settings.wyoming.host}:{self.port or self.settings.wyoming.port}"}
        if self.problems:
            report["problems"] = self.problems
        return {"wyoming": report}


class WyomingHandler(AsyncEventHandler):
    """One Home Assistant connection (it opens one per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, door: WyomingDoor):
        super().__init__(reader, writer)
        self.door = door
        self.language: str | None = None
        self.recording: Recording | None = None
        # A text stream (Home Assistant 2025.7+ streams a reply's text as it is written): its
        # unfinished sentence, and the voice asked for at its start.
        self.stream: SentenceSplitter | None = None
        self.stream_voice: str | None = None

    async def handle_event(self, event: Event) -> bool:
        try:
            return await self._handle(event)
        except (SpeechError, TooMuchAudio) as exc:
            return await self._fail(str(exc))

    async def _handle(self, event: Event) -> bool:
        door = self.door
        if Describe.is_type(event.type):
            await self.write_event(door.info_event)
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(event.type):
            self.language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            if door.stt is None:
                return await self._fail("speech to text is not available here (see agentd status)")
            self.recording = Recording(MAX_AUDIO_S)
        elif AudioChunk.is_type(event.type) and self.recording is not None:
            self.recording.add(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type) and self.recording is not None:
            recording, self.recording = self.recording, None
            await self.write_event(Transcript(text=await self._transcribe(recording), language=self.language).event())
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self.stream, self.stream_voice = SentenceSplitter(), start.voice.name if start.voice else None
        elif SynthesizeChunk.is_type(event.type) and self.stream is not None:
            for sentence in self.stream.add(SynthesizeChunk.from_event(event).text):
                await self._speak(sentence, self.stream_voice)
        elif SynthesizeStop.is_type(event.type) and self.stream is not None:
            for sentence in self.stream.rest():
                await self._speak(sentence, self.stream_voice)
            self.stream = None
            await self.write_event(SynthesizeStopped().event())
        elif Synthesize.is_type(event.type) and self.stream is None:  # inside a stream: a copy for old servers
            request = Synthesize.from_event(event)
            await self._speak(request.text, request.voice.name if request.voice else None)
        elif Transcript.is_type(event.type):
            transcript = Transcript.from_event(event)
            answer = await handle_transcript(door.daemon, door.conversations, transcript,
                                             door.settings.wyoming.allow_confirm)
            await self.write_event(answer.event())
        else:
            log.debug("wyoming: ignoring a %s event", event.type)
        return True

    async def _transcribe(self, recording: Recording) -> str:
        # Home Assistant names its pipeline's language ("de", "de-DE"); Whisper takes the primary
        # subtag. An English-only model hears English whatever is asked.
        language = primary(self.language) if self.language else None
        transcript = await self.door.stt.atranscribe(recording.samples(), language=language)
        why = self.door.guards.check(transcript) if self.door.guards is not None else None
        if why:  # Whisper's inventions from noise never reach Home Assistant as a command
            log.info("wyoming: ignored %r: %s", transcript.text, why)
            return ""
        log.info("wyoming: heard %r (%.1f s of audio, %.2f s to transcribe)", transcript.text,
                 recording.seconds, transcript.seconds)
        return transcript.text

    async def _speak(self, text: str, voice: str | None) -> None:
        """`text` as one audio-start, its audio-chunks and an audio-stop."""
        if self.door.speech is None:
            raise SpeechError("speech is not available here (see agentd status)")
        pcm = await self.door.speech.synthesize(text, voice)
        await self.write_event(AudioStart(rate=pcm.rate, width=pcm.width, channels=pcm.channels).event())
        step = SAMPLES_PER_CHUNK * pcm.width * pcm.channels
        for offset in range(0, len(pcm.data), step):
            await self.write_event(AudioChunk(rate=pcm.rate, width=pcm.width, channels=pcm.channels,
                                              audio=pcm.data[offset:offset + step]).event())
        await self.write_event(AudioStop().event())

    async def _fail(self, message: str) -> bool:
        log.warning("wyoming: %s", message)
        await self.write_event(Error(text=message, code="agentd").event())
        return False
