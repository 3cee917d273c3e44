"""Speech as PCM for Home Assistant: the speech program writes a WAV, the caller sends its samples.

The voice door plays speech itself (`agent.voice.tts`); over Wyoming the audio goes back to
Home Assistant instead, so the same programs are asked for a WAV: `espeak-ng --stdout`, or
`say -o FILE --data-format=LEI16@22050` on macOS. The voices are the program's own list.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path


class SpeechError(RuntimeError):
    """The speech program is missing or failed; the message says which and why."""


@dataclass(frozen=True)
class Pcm:
    """Raw little-endian samples and their format (as Wyoming's `audio-start` declares it)."""

    data: bytes
    rate: int
    width: int  # bytes per sample
    channels: int

    @property
    def seconds(self) -> float:
        return len(self.data) / (self.rate * self.width * self.channels)


@dataclass(frozen=True)
class VoiceInfo:
    """One voice the program has: the name to ask for, a description, its languages."""

    name: str
    description: str
    languages: tuple[str, ...]


class WavSpeech:
    """Text -> PCM with espeak-ng or say; `voice` is the default voice, `rate` words per minute."""

    def __init__(self, program: str, *, voice: str | None = None, rate: int | None = None):
        if shutil.which(program) is None:
            hint = "it comes with macOS" if program == "say" else "apt-get install espeak-ng"
            raise SpeechError(f"the speech program {program!r} is not installed ({hint})")
        self.program, self.voice, self.rate = program, voice, rate
        self._voices: list[VoiceInfo] | None = None

    async def voices(self) -> list[VoiceInfo]:
        """The program's voices (read once)."""
        if self._voices is None:
            listing = await _run([self.program, "--voices"] if self.program == "espeak-ng" else [self.program, "-v", "?"])
            parse = parse_espeak_voices if self.program == "espeak-ng" else parse_say_voices
            self._voices = parse(listing.decode(errors="replace"))
        return self._voices

    async def synthesize(self, text: str, voice: str | None = None) -> Pcm:
        """`text` spoken with `voice` (else the configured one) as PCM; SpeechError on failure."""
        voice = voice or self.voice
        if voice and voice not in {v.name for v in await self.voices()}:
            raise SpeechError(f"no voice {voice!r} in {self.program} (its --voices list names the ones it has)")
        options = (["-v", voice] if voice else []) + ([("-r" if self.program == "say" else "-s"), str(self.rate)]
                                                      if self.rate else [])
        if self.program == "espeak-ng":
            return read_wav(await _run(["espeak-ng", "--stdout", *options, text]))
        # say cannot write to a pipe; a temporary file it is.
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "speech.wav"
            await _run(["say", "-o", str(out), "--file-format=WAVE", "--data-format=LEI16@22050", *options, text])
            return read_wav(out.read_bytes())


def make_wav_speech(kind: str, *, voice: str | None = None, rate: int | None = None,
                    language: str = "en") -> WavSpeech | None:
    """The program for `voice.tts` (auto: say on macOS, else espeak-ng), in `language`'s voice
    unless `voice` names one; None for `none`."""
    from agent.languages import default_voice

    if kind == "auto":
        kind = "say" if sys.platform == "darwin" else "espeak-ng"
    return None if kind == "none" else WavSpeech(kind, voice=voice or default_voice(kind, language), rate=rate)


def read_wav(data: bytes) -> Pcm:
    """The samples of a WAV file. espeak-ng's stdout WAV carries a placeholder length (it
    cannot seek back), so the samples are read to the end rather than by the header's count."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            frames = w.readframes(1 << 31)
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"the speech program wrote no usable WAV: {exc}") from None
    usable = len(frames) - len(frames) % (width * channels)
    return Pcm(frames[:usable], rate, width, channels)


def parse_espeak_voices(listing: str) -> list[VoiceInfo]:
    """`espeak-ng --voices`: "Pty Language Age/Gender VoiceName File Other": the language
    is the name `-v` takes."""
    voices = []
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            voices.append(VoiceInfo(name=parts[1], description=parts[3].replace("_", " "),
                                    languages=languages_of(parts[1])))
    return voices


def parse_say_voices(listing: str) -> list[VoiceInfo]:
    """`say -v '?'`: "Name  en_US  # sample sentence" (a name may hold spaces)."""
    voices = []
    for line in listing.splitlines():
        head = line.split("#", 1)[0].split()
        if len(head) >= 2:
            name, locale = " ".join(head[:-1]), head[-1]
            voices.append(VoiceInfo(name=name, description=name, languages=languages_of(locale)))
    return voices


def languages_of(code: str) -> tuple[str, ...]:
    """"en-us" or "en_US" -> ("en", "en-US"): Home Assistant lists voices by either form."""
    base, _, region = code.replace("_", "-").partition("-")
    return (base, f"{base}-{region.upper()}") if region else (base,)


async def _run(argv: list[str]) -> bytes:
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode:
        raise SpeechError(f"{argv[0]} failed (exit {process.returncode}): {err.decode(errors='replace').strip()[:200]}")
    return out
