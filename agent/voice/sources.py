"""Audio sources: 16 kHz mono float32 blocks from a microphone (sounddevice) or a WAV file.

Every source is an `AudioSource`: `frames()` is an async iterator of 1-D float32 arrays.
`Resilient` wraps a source factory so a microphone that disappears is reported once, retried
with growing waits, and picked up again when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import wave
from pathlib import Path
from typing import AsyncIterator, Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BLOCK = 512  # 32 ms: the frame size Silero VAD takes at 16 kHz


class AudioSource(Protocol):
    """Where sound comes from."""

    name: str

    def frames(self) -> AsyncIterator[np.ndarray]: ...


class DeviceLost(OSError):
    """The microphone stopped delivering sound (unplugged, or taken by another program)."""


class WavSource:
    """A WAV file as a microphone; `realtime` paces it like a live one, `tail_s` adds silence."""

    def __init__(self, path: Path | str, *, realtime: bool = False, tail_s: float = 1.0):
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self.realtime = realtime
        self.tail_s = tail_s

    def read(self) -> np.ndarray:
        """The whole file as 16 kHz mono float32."""
        return read_wav(self.path)

    async def frames(self) -> AsyncIterator[np.ndarray]:
        audio = np.concatenate([self.read(), np.zeros(int(self.tail_s * SAMPLE_RATE), np.float32)])
        for start in range(0, len(audio), BLOCK):
            yield audio[start : start + BLOCK]
            # Yield to the loop even when not paced, so a long file never starves other tasks.
            await asyncio.sleep(BLOCK / SAMPLE_RATE if self.realtime else 0)


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV as 16 kHz mono float32; ValueError says how to convert other files."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; convert it with `sox {path} -b 16 out.wav`")
    audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:  # linear interpolation is plenty for speech recognition
        n = int(round(len(audio) * SAMPLE_RATE / rate))
        audio = np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(np.float32)
    return audio


def _wait_for_room(room: threading.Semaphore, closing: threading.Event, timeout_s: float) -> bool:
    """Take a place in the queue, waiting up to timeout_s; False at once when closing."""
    deadline = time.monotonic() + timeout_s
    while not closing.is_set():
        if room.acquire(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() >= deadline:
            return False
    return False


class MicSource:
    """A sounddevice input stream; its callback hands blocks to asyncio from PortAudio's thread."""

    def __init__(self, device: str | int | None = None, *, stall_s: float = 2.0, backlog_s: float = 5.0):
        self.device = device
        self.name = f"microphone {device!r}" if device is not None else "the default microphone"
        self.stall_s = stall_s  # no sound for this long from a running stream means it is gone
        self.backlog = max(1, int(backlog_s * SAMPLE_RATE / BLOCK))
        self.dropped = 0

    async def frames(self) -> AsyncIterator[np.ndarray]:
        import sounddevice as sd

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
        # Backpressure: when the loop is `backlog_s` behind, the audio thread waits for it
        # (a live device then drops sound, which PortAudio reports as an overflow) rather
        # than the backlog growing without bound; a device faster than real time is paced.
        room = threading.Semaphore(self.backlog)
        closing = threading.Event()  # set first when the stream closes: the audio thread stops waiting

        def callback(indata, _frames, _time, status) -> None:
            if status.input_overflow:
                self._dropped()
            if not _wait_for_room(room, closing, 5.0):
                if closing.is_set():
                    raise sd.CallbackAbort  # let abort() return at once
                self._dropped()
                return
            loop.call_soon_threadsafe(queue.put_nowait, indata[:, 0].astype(np.float32) / 32768.0)

        try:
            # int16: what microphones deliver natively (and what a raw s16 test device holds).
            stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=BLOCK,
                                    device=self.device, callback=callback)
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceLost(f"cannot open {self.name}: {exc} (`agentd devices` lists the inputs)") from exc
        try:
            while True:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
                # that lands as the queue hands over a block, and a busy stream always has one.
                try:
                    async with asyncio.timeout(self.stall_s):
                        block = await queue.get()
                except TimeoutError:
                    raise DeviceLost(f"{self.name} stopped sending sound") from None
                room.release()
                yield block
        finally:
            closing.set()  # never leave the audio thread waiting on a closed stream
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

    def _dropped(self) -> None:
        self.dropped += 1
        if self.dropped in (1, 100, 10000):  # reported, but not once per block
            log.warning("%s: sound dropped %d times (agentd is too busy to keep up)", self.name, self.dropped)


def rescan_devices() -> None:
    """Make PortAudio look for devices again (it lists them once, when it starts)."""
    import sounddevice as sd

    try:
        sd._terminate()
        sd._initialize()
    except Exception:  # a failed rescan just means the next open fails and is retried
        log.debug("PortAudio rescan failed", exc_info=True)


class Resilient:
    """A source that survives its device going away: report once, back off, reopen."""

    def __init__(self, open_source: Callable[[], AudioSource], *, retry_max_s: float = 30.0,
                 first_retry_s: float = 0.5, on_retry: Callable[[], None] | None = None):
        self.open_source = open_source
        self.retry_max_s = retry_max_s
        self.first_retry_s = first_retry_s
        self.on_retry = on_retry
        self.losses = 0  # how many times the device went away (for status and tests)
        self.name = "audio"

    async def frames(self) -> AsyncIterator[np.ndarray]:
        wait, lost = self.first_retry_s, False
        while True:
            source = None
            try:
                source = self.open_source()
                self.name = source.name
                async with contextlib.aclosing(source.frames()) as frames:  # closed now when we are
                    async for block in frames:
                        if lost:
                            log.info("%s is back", source.name)
                            lost, wait = False, self.first_retry_s
                        yield block
                return  # a source that ends (a file) is finished, not lost
            except Exception as exc:  # PortAudioError is a plain Exception; any failure means "gone"
                if not lost:
                    self.losses += 1
                    log.warning("%s: %s; retrying (every %.0f s at most) until it is back",
                                self.name, exc, self.retry_max_s)
                    lost = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.retry_max_s)
            if self.on_retry is not None:
                self.on_retry()
