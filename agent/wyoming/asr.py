"""Speech to text for Home Assistant: `transcribe`, then audio, then one `transcript`.

Home Assistant sends 16 kHz 16-bit mono, but the format is whatever `audio-start` and each
`audio-chunk` say, so every chunk is converted (the `wyoming` library's converter) to what
faster-whisper takes: 16 kHz mono, then float32 in [-1, 1].
"""

from __future__ import annotations

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter

RATE, WIDTH, CHANNELS = 16000, 2, 1


class TooMuchAudio(ValueError):
    """A stream longer than the limit; the message gives both lengths."""


class Recording:
    """The audio of one `transcribe` request, collected chunk by chunk."""

    def __init__(self, max_seconds: float):
        self.max_bytes = int(max_seconds * RATE * WIDTH)
        self._converter = AudioChunkConverter(rate=RATE, width=WIDTH, channels=CHANNELS)
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, chunk: AudioChunk) -> None:
        """Keep one chunk, converted; TooMuchAudio past the limit (a stream that never stops)."""
        audio = self._converter.convert(chunk).audio
        self._size += len(audio)
        if self._size > self.max_bytes:
            raise TooMuchAudio(f"more than {self.max_bytes / (RATE * WIDTH):.0f} s of audio in one transcribe request")
        self._parts.append(audio)

    @property
    def seconds(self) -> float:
        return self._size / (RATE * WIDTH)

    def samples(self) -> np.ndarray:
        """Everything received, as 16 kHz mono float32."""
        return np.frombuffer(b"".join(self._parts), "<i2").astype(np.float32) / 32768.0
