"""Voice activity detection and endpointing with the Silero model that faster-whisper bundles.

`SileroVAD` scores 32 ms frames, keeping the model's state between calls so a live stream is
scored once per frame. `Endpointer` turns scores into utterances: speech starts above the
threshold, ends after `end_silence_ms` below it, and is cut at `max_utterance_s`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.voice.sources import BLOCK, SAMPLE_RATE

FRAME_S = BLOCK / SAMPLE_RATE
_CONTEXT = 64  # samples of the previous frame Silero v5+ expects in front of each frame


class SpeechScorer(Protocol):
    """Scores one 512-sample frame: the probability that it holds speech."""

    def __call__(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


class SileroVAD:
    """Streaming Silero VAD: one ONNX call per frame, state carried across calls."""

    def __init__(self):
        from faster_whisper.vad import get_vad_model  # lazy: onnxruntime is heavy

        self._session = get_vad_model().session
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (between utterances the state is kept; this is for a new stream)."""
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = x[0, -_CONTEXT:]
        return float(out.reshape(-1)[0])


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech: its audio, and when the endpointer decided it had ended."""

    audio: np.ndarray
    speech_s: float  # how much of it was above the threshold
    capped: bool  # cut off at max_utterance_s rather than ended by silence
    ended_at: float  # time.perf_counter() when the endpointer decided speech had ended
    start_s: float = 0.0  # where it starts and ends in the stream (seconds of audio)
    end_s: float = 0.0


class Endpointer:
    """Feed it frames; it returns an Utterance when one ends (else None)."""

    def __init__(self, scorer: SpeechScorer, *, threshold: float = 0.5, end_silence_ms: int = 400,
                 min_speech_ms: int = 250, max_utterance_s: float = 15.0, pre_roll_ms: int = 200):
        self.scorer = scorer
        self.threshold = threshold
        self.low = max(threshold - 0.15, 0.01)  # hysteresis: a dip in a word is not the end
        self.end_frames = max(1, round(end_silence_ms / 1000 / FRAME_S))
        self.min_speech_frames = round(min_speech_ms / 1000 / FRAME_S)
        self.max_frames = max(1, round(max_utterance_s / FRAME_S))
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(1, round(pre_roll_ms / 1000 / FRAME_S)))
        self._buffer = np.zeros(0, np.float32)
        self._frames: list[np.ndarray] = []
        self._speech = self._silence = 0
        self._position = 0  # frames seen, for stream times
        self._start = 0
        self.in_speech = False

    def feed(self, block: np.ndarray) -> list[Utterance]:
        """Add audio of any length; the utterances that ended within it."""
        self._buffer = np.concatenate([self._buffer, block]) if len(self._buffer) else block
        done = []
        while len(self._buffer) >= BLOCK:
            frame, self._buffer = self._buffer[:BLOCK], self._buffer[BLOCK:]
            utterance = self._frame(frame)
            if utterance is not None:
                done.append(utterance)
        return done

    def flush(self) -> Utterance | None:
        """End of the stream: the utterance in progress, if it is long enough."""
        return self._finish(capped=False) if self.in_speech else None

    def _frame(self, frame: np.ndarray) -> Utterance | None:
        p = self.scorer(frame)
        self._position += 1
        if not self.in_speech:
            self._pre_roll.append(frame)
            if p >= self.threshold:
                self.in_speech = True
                self._frames = list(self._pre_roll)
                self._start = self._position - len(self._frames)
                self._speech, self._silence = 1, 0
            return None
        self._frames.append(frame)
        if p >= self.low:
            self._speech += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence >= self.end_frames:
            return self._finish(capped=False)
        if len(self._frames) >= self.max_frames:
            return self._finish(capped=True)
        return None

    def _finish(self, *, capped: bool) -> Utterance | None:
        frames, speech = self._frames, self._speech
        self._frames, self._speech, self._silence, self.in_speech = [], 0, 0, False
        self._pre_roll.clear()
        if speech < self.min_speech_frames:
            return None
        return Utterance(audio=np.concatenate(frames), speech_s=speech * FRAME_S, capped=capped,
                         ended_at=time.perf_counter(), start_s=self._start * FRAME_S,
                         end_s=self._position * FRAME_S)
