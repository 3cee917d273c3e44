"""Prefill the fixed system prompt + tool schemas once; start every model call from a copy.

Qwen3.5's Gated-DeltaNet layers keep an ArraysCache that cannot be trimmed back to a
shorter prompt, so the cache of the prefix is kept pristine and each call works on a deep
copy of it. The prefix holds no clock or other per-turn text, so it stays byte-identical
between turns and is rebuilt only when the instructions or the tool set change.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

# Tokens per step when the prefix is built ahead of time (a stop is heard between steps).
PRIME_STEP = 64


@dataclass
class PrefixStats:
    hits: int = 0
    misses: int = 0
    builds: int = 0
    loads: int = 0  # prefixes loaded from the home folder instead of built
    tokens_reused: int = 0


class PrefixCache:
    """One prefilled prefix (the current system prompt + tools) and its counters."""

    def __init__(self, model: Any, *, step_size: int = 2048, enabled: bool = True, turn_start: str = "<|im_start|>"):
        self.model = model
        self.turn_start = turn_start
        self.step_size = step_size
        self.enabled = enabled
        self.stats = PrefixStats()
        self._tokens: list[int] | None = None
        self._cache: list | None = None

    def fetch(self, engine: Any, prefix_text: str, full_text: str, tokens: list[int]) -> tuple[list, int, bool]:
        """Return (cache to generate with, prompt tokens it already holds, was it a hit)."""
        from mlx_lm.models.cache import make_prompt_cache

        prefix = self._usable_prefix(engine, prefix_text, full_text, tokens)
        if prefix is None:
            self.stats.misses += 1
            return make_prompt_cache(self.model), 0, False
        hit = prefix == self._tokens
        if hit:
            self.stats.hits += 1
            self.stats.tokens_reused += len(prefix)
        else:
            self.stats.misses += 1
            self._build(prefix)
        return copy.deepcopy(self._cache), len(prefix), hit

    def _usable_prefix(self, engine: Any, prefix_text: str, full_text: str, tokens: list[int]) -> list[int] | None:
        # The prefix must be a token-exact head of the prompt and leave something to feed.
        if not self.enabled or not prefix_text or not full_text.startswith(prefix_text):
            return None
        if self._tokens is not None and tokens[: len(self._tokens)] == self._tokens and len(tokens) > len(self._tokens):
            return self._tokens
        prefix = engine.encode(prefix_text)
        if tokens[: len(prefix)] != prefix:
            # The user's first word may merge with the turn header into one token; fall back
            # to the boundary before that header, which no tokenizer merges across.
            header = prefix_text.rfind(self.turn_start)
            prefix = engine.encode(prefix_text[:header]) if header > 0 else []
        if not prefix or tokens[: len(prefix)] != prefix or len(tokens) <= len(prefix):
            log.debug("prefix tokens are not a head of the prompt tokens; no prefix cache")
            return None
        return prefix

    def _build(self, prefix: list[int], *, step_size: int | None = None, stop: Any = None,
               progress: Callable[[int], None] | None = None) -> None:
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache

        cache = make_prompt_cache(self.model)
        step = step_size or self.step_size
        layers = _trunk(self.model)
        for start in range(0, len(prefix), step):
            if stop is not None and stop.is_set():
                log.info("prefix cache build stopped after %d of %d tokens", start, len(prefix))
                return
            chunk = mx.array(prefix[start : start + step])[None]
            layers(chunk, cache=cache)
            mx.eval([c.state for c in cache])
            if progress is not None:
                progress(min(start + step, len(prefix)))
        self._tokens, self._cache = list(prefix), cache
        self.stats.builds += 1
        log.info("prefix cache built: %d tokens", len(prefix))

    def prime(self, prefix: list[int], stop: Any = None, *, store: Any = None, template: str = "",
              progress: Callable[[int], None] | None = None) -> str:
        """Build the cache for this prefix ahead of the first call; say where it came from
        ("kept", "loaded" from `store`, a PrefixStore, "built" and saved there, or "stopped").

        Built in small steps, checking `stop` (a threading.Event) between them: on a slow CPU a
        big step takes minutes, and a daemon asked to stop meanwhile should not wait for it."""
        if not self.enabled or prefix == self._tokens:
            return "kept"
        saved = store.load(prefix, template) if store is not None else None
        if saved is not None:
            self._tokens, self._cache = list(prefix), saved
            self.stats.loads += 1
            log.info("prefix cache loaded from %s: %d tokens", store.path, len(prefix))
            return "loaded"
        self._build(prefix, step_size=min(self.step_size, PRIME_STEP), stop=stop, progress=progress)
        if self._tokens != prefix:
            return "stopped"
        if store is not None:
            store.save(self._cache, prefix, template)
        return "built"

    def clear(self) -> None:
        """Forget the prefix (tools or instructions changed)."""
        self._tokens, self._cache = None, None


def _trunk(model: Any) -> Any:
    """The model without its output head: a prefix needs only its cache, not logits for every
    token (the head is about a fifth of a small model's prefill: 49k x 576 of SmolLM2's 135M).
    mlx-lm's llama-style models keep the layers in `.model`, Qwen3.5 in `.language_model.model`."""
    inner = getattr(model, "language_model", model)
    trunk = getattr(inner, "model", None)
    return trunk if callable(trunk) else model
