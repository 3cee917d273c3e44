"""The microphone door inside the daemon.

`VoiceDoor` runs the pipeline as the daemon's `voice` service, with each command queued as a
`voice` turn (the highest priority). Every utterance is kept in the store with its stage
times, and connected chat windows are told what was heard (a `voice` notice). A confirm-tier
tool in a voice turn is asked aloud (`VoicePipeline.confirm`) and opened to the chat windows
as the same question (`daemon.questions`): the first answer, spoken or typed, wins. Scheduled
announcements with `speak: true` are spoken through the same speaker.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from agent.voice.pipeline import STAGES, UtteranceReport, VoicePipeline
from agent.voice.stt import ModelNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceNotice:
    """What the daemon tells chat windows about one utterance (shown in their status line)."""

    text: str
    kind: str = "voice"
    job_id: str | None = None


class VoiceDoor:
    """Listens while the daemon runs; `serve` is the service, `announce` the schedule's notify."""

    def __init__(self, daemon: Any, voice: Any, *, store: Any = None, hints: Iterable[str] = (),
                 models_dir: Path | None = None, pipeline: VoicePipeline | None = None, language: str = "en"):
        from agent.voice.service import build_pipeline, daemon_respond

        self.daemon, self.voice, self.store = daemon, voice, store
        # Late-bound: the pipeline that asks aloud is the one built here (or handed in).
        respond = daemon_respond(daemon, confirm=lambda tool, arguments: self.pipeline.confirm(tool, arguments))
        self.pipeline = pipeline or build_pipeline(voice, respond=respond, hints=hints, models_dir=models_dir,
                                                   language=language)
        self.pipeline.on_report = self.heard
        questions = getattr(daemon, "questions", None)  # a test's stand-in daemon may have none
        if questions is not None:
            self.pipeline.on_question = questions.put
        self._speaking: set[asyncio.Task] = set()
        self.problem: str | None = None  # why voice is off, when it is

    async def serve(self) -> None:
        """The daemon's `voice` service: load the speech model, then listen until stopped.

        A speech model that cannot load turns voice off with the reason in the log and in
        `agentd status`; chat and schedules carry on. A missing microphone is retried.
        """
        stt = self.pipeline.stt
        try:
            await stt.aload()
        except ModelNotFound as exc:
            self.problem = str(exc)
            log.error("voice is off: %s", exc)
            return
        if self.voice.wake_mode == "push":
            log.info("voice: push-to-talk; `agentd listen --once` takes a command")
            await asyncio.Event().wait()
        log.info("voice: listening on %s (wake: %s)", self.pipeline.source.name, self.voice.wake_mode)
        try:
            await self.pipeline.run()
        finally:
            for task in list(self._speaking):
                task.cancel()

    def use_words(self, hints: Iterable[str]) -> None:
        """Bias recognition toward these words from now on (after a reload changed the home)."""
        from agent.voice.stt import hint_prompt

        if hasattr(self.pipeline.stt, "prompt") and self.voice.stt_hints:
            self.pipeline.stt.prompt = hint_prompt([*self.voice.wake_phrases, *hints])

    def heard(self, report: UtteranceReport) -> None:
        """Keep the utterance and tell the chat windows; a failure here never stops listening."""
        try:
            if self.store is not None:
                self.store.add_utterance(report.heard, report.command, report.ignored, report.reply,
                                         report.tools, report.times)
            self.daemon.announce(VoiceNotice(text=notice_text(report)))
        except Exception:
            log.exception("voice: could not record %s", report.line())

    def announce(self, announcement: Any) -> bool:
        """The scheduler's notify: show it to clients, and say it aloud when it asks to be spoken."""
        told = self.daemon.announce(announcement)
        if getattr(announcement, "speak", False):
            task = asyncio.get_running_loop().create_task(self.pipeline.speaker.speak(announcement.text))
            self._speaking.add(task)
            task.add_done_callback(self._speaking.discard)
            told = True
        return told

    def status(self) -> dict:
        """For `agentd status`: what the door is doing and its typical stage times."""
        if self.problem:
            return {"voice": {"off": self.problem}}
        return {"voice": {"listening_on": self.pipeline.source.name, "wake": self.voice.wake_mode,
                          **timing_summary(self.store.utterances(100) if self.store is not None else [])}}


def notice_text(report: UtteranceReport) -> str:
    """One line for a chat window's status line."""
    if report.answer:
        return f"heard {report.heard!r}: answered {report.answer}"
    if report.ignored:
        return f"heard {report.heard!r}: ignored ({report.ignored})"
    tools = f" -> {', '.join(report.tools)}" if report.tools else ""
    return f"heard {report.heard!r}: ran {report.command!r}{tools}"


def timing_summary(utterances: list) -> dict:
    """Counts and the median ms after end of speech of each stage, over stored utterances."""
    commands = [u for u in utterances if u.command is not None]
    medians = {}
    for stage in STAGES:
        values = [u.times[stage] for u in commands if stage in u.times]
        if values:
            medians[stage] = round(statistics.median(values))
    return {"utterances": len(utterances), "commands": len(commands), "median_ms": medians}


def house_words(agent: Any, home_control: Any = None) -> list[str]:
    """What speech recognition is biased toward: the words the agent's phrases listen for, and
    the names of the devices that need a confirmation (locks, doors), which those leave out:
    tiny.en hears "lock the back door" as "lock the Mac door" without them."""
    words = agent.intents.vocabulary() if getattr(agent, "intents", None) is not None else []
    secure = home_control.registry.secure_slot_values() if home_control is not None else []
    return list(dict.fromkeys([*words, *secure]))
