"""Spoken replies: macOS `say`, `espeak-ng`, or none, behind one small protocol.

A reply is spoken sentence by sentence as it streams (`SentenceSplitter`), so the first
sentence plays while the model writes the rest. Speaking is cancellable: cancelling the
`speak()` task stops the program at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from typing import Protocol

log = logging.getLogger(__name__)


class Speaker(Protocol):
    """Says text out loud; `speak` returns when done and stops at once when cancelled."""

    name: str

    async def speak(self, text: str) -> None: ...


class SilentSpeaker:
    """Speaks nothing (tts: none); keeps what it was asked to say, for logs and tests."""

    name = "none"

    def __init__(self):
        self.said: list[str] = []

    async def speak(self, text: str) -> None:
        self.said.append(text)


class CommandSpeaker:
    """Runs a speech program (say, espeak-ng) per sentence; killed when cancelled."""

    def __init__(self, argv: list[str], name: str):
        self.argv = argv
        self.name = name

    async def speak(self, text: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.argv, text, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        try:
            _, err = await process.communicate()
        except asyncio.CancelledError:
            if process.returncode is None:
                # The whole group: a helper the program started would otherwise keep playing.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            raise
        if process.returncode:
            log.warning("%s could not speak (exit %d): %s", self.name, process.returncode, err.decode(errors="replace").strip()[:200])


def make_speaker(kind: str = "auto", *, voice: str | None = None, rate: int | None = None,
                 device: str | int | None = None, language: str = "en") -> Speaker:
    """The configured speaker, in `language`'s voice unless `voice` names one; ValueError names
    the missing program and how to get it."""
    if kind == "auto":
        kind = "say" if sys.platform == "darwin" else ("espeak-ng" if shutil.which("espeak-ng") else "none")
        if kind == "none":
            log.warning("no speech program found: install espeak-ng (apt-get install espeak-ng) to hear replies")
    if kind == "none":
        return SilentSpeaker()
    if shutil.which(kind) is None:
        hint = "it comes with macOS" if kind == "say" else "apt-get install espeak-ng"
        raise ValueError(f"voice.tts is {kind!r} but the program {kind!r} is not installed ({hint})")
    argv = [kind]
    from agent.languages import default_voice

    voice = voice or default_voice(kind, language)
    if voice:
        argv += ["-v", voice]
    if rate:
        argv += ["-r" if kind == "say" else "-s", str(rate)]
    if device is not None and kind == "say":
        argv += ["-a", str(device)]
    elif device is not None:
        # espeak-ng plays to the default output; another device is chosen through ALSA/Pulse.
        log.info("voice.output_device is ignored by espeak-ng; set the default output instead")
    return CommandSpeaker(argv, kind)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


class SentenceSplitter:
    """Collects streamed text and hands back whole sentences as they complete."""

    def __init__(self):
        self._pending = ""

    def add(self, text: str) -> list[str]:
        """Sentences completed by this piece of text."""
        parts = _SENTENCE_END.split(self._pending + text)
        self._pending = parts.pop()
        return [p.strip() for p in parts if p.strip()]

    def rest(self) -> list[str]:
        """The unfinished last sentence, at the end of the reply."""
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []
