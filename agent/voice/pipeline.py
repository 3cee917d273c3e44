"""The voice pipeline: source -> endpointer -> STT -> guards -> wake -> turn -> speech.

One task listens (VAD runs per 32 ms frame, cheap enough for the event loop) and queues
utterances; the handler transcribes them one at a time. A command's turn, and the spoken
reply, run as tasks of their own, so the handler keeps hearing while they run: a wake phrase
heard meanwhile cuts the speech short, and "hey agent, stop" also cancels the turn; anything
else heard while the reply plays is taken for the speaker's own voice. Windows (wake phrase said alone, follow-up) are
measured in stream time, so a WAV file behaves as the same words said live would.

A confirm-tier tool in a turn calls `confirm`: the question is spoken in turn with the reply,
and the next utterance (no wake phrase needed) is its answer, never a new command; only a
clear yes approves (agent.voice.answers). The window for it runs on the clock once the
question has been spoken; `on_question` lets a chat window answer the same question first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from agent.events import ReplyDone, TextDelta, ToolFinished, ToolStarted
from agent.skills.phrases import normalize
from agent.daemon.questions import Answer, Question
from agent.languages import ENGLISH, Language
from agent.voice.answers import acknowledgement, hear_answer, spoken_question
from agent.voice.sources import AudioSource
from agent.voice.stt import Guards, Transcript
from agent.voice.tts import SentenceSplitter, SilentSpeaker, Speaker
from agent.voice.vad import Endpointer, Utterance
from agent.voice.wake import Wake, spoken_numbers

log = logging.getLogger(__name__)

Respond = Callable[[str], AsyncIterator[Any]]  # text -> step events ending with ReplyDone
STOP_WORDS = {"stop", "cancel", "quiet", "be quiet", "never mind", "nevermind", "shut up", "enough"}
STAGES = ("transcript", "first_token", "first_tool_done", "first_audio", "done", "stopped")


@dataclass
class UtteranceReport:
    """What happened to one utterance; `times` are ms after the end of speech was detected."""

    start_s: float
    end_s: float
    heard: str = ""
    command: str | None = None
    ignored: str | None = None
    reply: str = ""
    tools: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    transcript: Transcript | None = None
    stop: bool = False  # it asked to stop what was running
    answer: str | None = None  # it answered a spoken question: yes | no | unclear

    def line(self) -> str:
        """One log line: what was heard and what came of it."""
        stages = ", ".join(f"{k} {v:.0f} ms" for k, v in self.times.items())
        what = f"ignored: {self.ignored}" if self.ignored else f"ran {self.command!r}" + (f" -> {', '.join(self.tools)}" if self.tools else "")
        return f"heard {self.heard!r} at {self.start_s:.2f}-{self.end_s:.2f} s: {what}" + (f" ({stages})" if stages else "")


class VoicePipeline:
    """Listens on a source and runs the commands it hears."""

    def __init__(self, *, source: AudioSource, endpointer: Endpointer, stt: Any, respond: Respond,
                 wake: Wake, speaker: Speaker | None = None, mode: str = "phrase", guards: Guards = Guards(),
                 wake_window_s: float = 8.0, follow_up_s: float = 5.0, confirm_window_s: float = 6.0,
                 on_report: Callable[[UtteranceReport], None] | None = None,
                 on_question: Callable[[Question], None] | None = None, language: Language = ENGLISH):
        self.source, self.endpointer, self.stt, self.respond = source, endpointer, stt, respond
        self.wake, self.speaker, self.mode, self.guards = wake, speaker or SilentSpeaker(), mode, guards
        self.wake_window_s, self.follow_up_s, self.confirm_window_s = wake_window_s, follow_up_s, confirm_window_s
        self.on_report, self.on_question = on_report, on_question
        self.language = language  # the door's own sentences and the yes/no words
        self.reports: list[UtteranceReport] = []
        self._open_until = -1.0  # stream time until which no wake phrase is needed
        self._speech: asyncio.Task | None = None
        self._turn_task: asyncio.Task | None = None  # the command being carried out
        self._sentences: asyncio.Queue | None = None  # what the running turn has left to say
        self._splitter = SentenceSplitter()  # the running turn's text not yet said
        self._question: Question | None = None  # asked aloud, waiting for its answer
        self._listening_for_answer = False  # the question has been spoken; the next utterance answers it
        self._answers_from_s = float("-inf")  # stream time the question ended: an answer starts later
        self._turn_utterance: Utterance | None = None  # the command being carried out, as heard
        self._unheard = 0  # utterances queued or being transcribed, not yet taken as anything

    async def run(self, *, once: bool = False, push: bool = False) -> list[UtteranceReport]:
        """Listen until the source ends (with `once`, until one command has run); with `push`
        (push-to-talk) no wake phrase is needed."""
        queue: asyncio.Queue[Utterance | None] = asyncio.Queue()
        listener = asyncio.create_task(self._listen(queue), name="voice-listen")
        try:
            while (utterance := await queue.get()) is not None:
                report = await self.handle(utterance, push=push, wait=once)
                if once and report.command is not None:
                    break
            await self._finish_turn()
            await self.finish_speaking()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if self._turn_task is not None:
                self._turn_task.cancel()
            await self.stop_speaking()
        return self.reports

    async def _listen(self, queue: asyncio.Queue) -> None:
        try:
            # aclosing: when listening is cancelled (agentd stopping), the source closes its
            # stream now, not whenever the loop finalizes the generator (PortAudio's thread
            # would wait on a full queue meanwhile, and the daemon took 20 s to stop).
            async with contextlib.aclosing(self.source.frames()) as frames:
                async for block in frames:
                    for utterance in self.endpointer.feed(block):
                        self._unheard += 1
                        queue.put_nowait(utterance)
                    # A source with sound already waiting never suspends; let the handler run.
                    await asyncio.sleep(0)
            if (last := self.endpointer.flush()) is not None:
                self._unheard += 1
                queue.put_nowait(last)
        finally:
            queue.put_nowait(None)

    async def handle(self, utterance: Utterance, *, push: bool = False, wait: bool = True) -> UtteranceReport:
        """Transcribe one utterance and, if it is a command, start it (after the one before it
        ends); with `wait`, until it is done. The report says what came of it once it is final."""
        report = UtteranceReport(start_s=utterance.start_s, end_s=utterance.end_s)
        command = None
        try:
            report.transcript = await self.stt.atranscribe(utterance.audio)
            report.heard = report.transcript.text
            report.times["transcript"] = _ms(utterance.ended_at)
            command = self._command(report, utterance, push=push)
            if report.stop:
                await self._finish_turn()
                await self.stop_speaking()
                report.times["stopped"] = _ms(utterance.ended_at)  # turn and speech have ended
        finally:
            self._unheard = max(0, self._unheard - 1)  # taken as something (or failed)
            if command is None:
                self._done(report)
        if command is None:
            return report
        report.command = command
        await self._finish_turn()  # one command at a time, in the order they were said
        self._turn_task = asyncio.create_task(self._carry_out(command, report, utterance), name="voice-turn")
        if wait:
            await self._finish_turn()
        return report

    async def _carry_out(self, command: str, report: UtteranceReport, utterance: Utterance) -> None:
        try:
            await self._turn(command, report, utterance)
        finally:
            self._done(report)

    def _done(self, report: UtteranceReport) -> None:
        self.reports.append(report)
        log.info("voice: %s", report.line())
        if self.on_report is not None:
            self.on_report(report)

    async def _finish_turn(self) -> None:
        """Wait for the command being carried out (a cancelled one just ends)."""
        if self._turn_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._turn_task

    def _command(self, report: UtteranceReport, utterance: Utterance, *, push: bool) -> str | None:
        """The command in a transcript, or None with `report.ignored` saying why."""
        if self._question is not None:
            return self._answer(report, utterance)
        if (reason := self.guards.check(report.transcript)) is not None:
            report.ignored = reason
            return None
        woke = self.wake.split(report.heard)
        speaking = self._speech is not None and not self._speech.done()
        working = self._turn_task is not None and not self._turn_task.done()
        if woke.woke and speaking:
            self._speech.cancel()  # barge in: the person wants to say something
        elif speaking:
            report.ignored = "heard while speaking (taken for the reply's own sound)"
            return None
        if woke.woke and not normalize(woke.command):
            self._open_until = utterance.end_s + self.wake_window_s
            report.ignored = f"wake phrase alone; the next {self.wake_window_s:.0f} s need none"
            return None
        if woke.woke:
            command = woke.command
        elif push or self.mode == "always" or utterance.start_s <= self._open_until:
            command = report.heard
        else:
            report.ignored = "no wake phrase"
            return None
        self._open_until = -1.0  # a window lets one command through
        if normalize(command) in STOP_WORDS:
            if working:
                self._turn_task.cancel()
            cut = [what for what, was in (("turn", working), ("speech", speaking)) if was]
            report.stop = True
            report.ignored = "asked to stop" + (f" ({' and '.join(cut)} cut short)" if cut else "")
            return None
        return spoken_numbers(command).strip()

    def _answer(self, report: UtteranceReport, utterance: Utterance) -> None:
        """Take an utterance as the answer to the open question (never as a command)."""
        if not self._listening_for_answer or utterance.start_s < self._answers_from_s:
            # Begun before the question ended: the microphone hearing the question itself.
            report.ignored = "heard while the question was asked (taken for its own sound)"
            return None
        reason = self.guards.check(report.transcript)
        # Noise the guards reject is no answer, and anything but a clear yes is a no.
        report.answer = "unclear" if reason is not None else hear_answer(report.heard, self.wake, language=self.language)
        report.ignored = f"the answer to {self._question.text!r}: {report.answer}" + (f" ({reason})" if reason else "")
        self._question.settle(Answer(approved=report.answer == "yes", by="voice", reason=report.answer))
        return None

    async def confirm(self, tool: Any, arguments: dict) -> Answer:
        """Ask aloud whether `tool` may run; true only on a clear yes (by voice or in a chat window).

        The turn's `confirm(tool, arguments)` hook for voice turns."""
        question = Question(text=spoken_question(tool, arguments, self.language), tool=tool.name, arguments=arguments,
                            risk=getattr(tool, "risk", "confirm"), window_s=self.confirm_window_s)
        self._question = question
        try:
            if self.on_question is not None:
                self.on_question(question)  # a chat window may answer it first
            await self._say(question.text)
            heard = self._turn_utterance
            self._answers_from_s = _stream_now(heard) if heard is not None else float("-inf")
            self._listening_for_answer = True
            await self._wait_for_answer(question)
            question.settle(Answer(approved=False, by="voice", reason="silence"))
        finally:
            self._listening_for_answer = False
            self._question = None
            question.settle(Answer(approved=False, by="voice", reason="cancelled"))  # the turn was stopped
        answer: Answer = question.answer.result()
        if answer.by == "chat":
            await self._say(self.language.lines["chat_yes" if answer.approved else "chat_no"])
        elif line := acknowledgement(answer.reason, self.language):
            await self._say(line)
        return answer

    async def _wait_for_answer(self, question: Question) -> None:
        """Until the answer comes or the window passes; speech begun in time (still being said,
        or waiting for Whisper) is heard out first, for at most one more window."""
        await asyncio.wait([question.answer], timeout=self.confirm_window_s)
        give_up = time.monotonic() + self.confirm_window_s
        while not question.answer.done() and (self._unheard or self.endpointer.in_speech) and time.monotonic() < give_up:
            await asyncio.wait([question.answer], timeout=0.05)

    async def _say(self, text: str) -> None:
        """Say `text` after what the running turn has queued; return once it has been said."""
        if self._sentences is None or self._speech is None or self._speech.done():
            await self.speaker.speak(text)
            return
        said = asyncio.get_running_loop().create_future()
        for sentence in [*self._splitter.rest(), text]:  # the reply so far, even half a sentence, comes first
            self._sentences.put_nowait(sentence)
        self._sentences.put_nowait(said)
        await asyncio.wait([said, self._speech], return_when=asyncio.FIRST_COMPLETED)

    async def _turn(self, command: str, report: UtteranceReport, utterance: Utterance) -> None:
        self._sentences = sentences = asyncio.Queue()  # sentences, or futures to resolve once reached
        self._turn_utterance = utterance
        self._speech = asyncio.create_task(self._speak(sentences, report, utterance), name="voice-speak")
        self._splitter = splitter = SentenceSplitter()
        try:
            async for event in self.respond(command):
                if isinstance(event, (TextDelta, ToolStarted)):
                    report.times.setdefault("first_token", _ms(utterance.ended_at))
                if isinstance(event, TextDelta):
                    for sentence in splitter.add(event.text):
                        sentences.put_nowait(sentence)
                elif isinstance(event, ToolFinished):
                    report.times.setdefault("first_tool_done", _ms(utterance.ended_at))
                    report.tools.append(event.name)
                    report.tool_results.append(event.result)
                elif isinstance(event, ReplyDone):
                    report.reply = event.text
                    if not report.reply.strip() and event.stopped_by != "done":
                        sentences.put_nowait(self.language.lines["failed"])
        finally:
            for sentence in splitter.rest():
                sentences.put_nowait(sentence)
            sentences.put_nowait(None)
            report.times["done"] = _ms(utterance.ended_at)

    async def _speak(self, sentences: asyncio.Queue, report: UtteranceReport, utterance: Utterance) -> None:
        try:
            while (sentence := await sentences.get()) is not None:
                if isinstance(sentence, asyncio.Future):  # someone waits until this point is said
                    if not sentence.done():
                        sentence.set_result(None)
                    continue
                report.times.setdefault("first_audio", _ms(utterance.ended_at))
                await self.speaker.speak(sentence)
        finally:
            # The follow-up window opens when the reply has been heard, in stream time.
            spoken_at = _stream_now(utterance)
            self._open_until = max(self._open_until, spoken_at + self.follow_up_s) if self.follow_up_s else self._open_until

    async def finish_speaking(self) -> None:
        """Wait for the reply being spoken to end."""
        if self._speech is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._speech

    async def stop_speaking(self) -> None:
        """Cut the reply being spoken short."""
        if self._speech is not None and not self._speech.done():
            self._speech.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speech


def _stream_now(heard: Utterance) -> float:
    """Where the stream is now, from where `heard` ended and the time since: so a WAV file read
    faster than real time behaves as the same words said live would."""
    return heard.end_s + (time.perf_counter() - heard.ended_at)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
