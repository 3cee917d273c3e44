"""Every model call of a conversation prefills only what is new.

The prefix cache (prefix_cache.py) covers the system prompt and tools. Everything after it —
the history, the new message, and inside a turn the model's own tool call and the tool's
result — would otherwise be prefilled again on every call. Qwen3.5's Gated-DeltaNet layers
keep a state that cannot be trimmed back, so a cache cannot be cut to the common prefix of
two prompts; instead, while each call's prompt is read, a snapshot of the cache is kept for
the conversation at the end of its last message (before the generation prompt), with the
tokens it holds. The next call of that
conversation starts from a copy of the snapshot when those tokens are an exact head of its
prompt — compared token by token, never assumed — and prefills only the rest: the end of the
assistant's message as the chat template renders it, the tool's result, the next message.
When they are not (the template renders a past turn differently, the tools changed), the
call falls back to the prefix cache, so the answer is always the same as without this cache.

Memory is bounded by keeping the snapshots of the most recently used conversations only.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ConversationStats:
    hits: int = 0
    misses: int = 0
    tokens_reused: int = 0

    def report(self, entries: int) -> dict:
        calls = self.hits + self.misses
        return {"conversations": entries, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / calls, 3) if calls else None, "tokens_reused": self.tokens_reused}


class ConversationCache:
    """Snapshots of the cache at the end of each conversation's last prompt, most recent kept."""

    def __init__(self, model: Any, *, keep: int = 4, step_size: int = 2048):
        self.model = model
        self.keep = keep
        self.step_size = step_size
        self.stats = ConversationStats()
        self._snapshots: OrderedDict[str, tuple[list[int], list]] = OrderedDict()

    def fetch(self, conversation: str | None, tokens: list[int]) -> tuple[list, int] | None:
        """(a copy of the conversation's cache, tokens it holds) when they are an exact head of
        `tokens` with something left to feed; None otherwise."""
        if not conversation or self.keep <= 0:
            return None
        kept = self._snapshots.get(conversation)
        if kept is None or len(kept[0]) >= len(tokens) or tokens[: len(kept[0])] != kept[0]:
            self.stats.misses += 1
            return None
        self._snapshots.move_to_end(conversation)
        self.stats.hits += 1
        self.stats.tokens_reused += len(kept[0])
        return copy.deepcopy(kept[1]), len(kept[0])

    def read_and_keep(self, conversation: str | None, cache: list, tokens: list[int], held: int,
                      boundary: int | None = None) -> int:
        """Read `tokens[held:-1]` into `cache` (it holds `tokens[:held]`), keep a snapshot for the
        conversation's next call, and return how many tokens the cache now holds (the last one
        is left for the generation, which needs its logits).

        The snapshot is taken at `boundary`, the end of the last message before the generation
        prompt, when there is one: chat templates render a past assistant turn differently from
        the prompt it was written after (Qwen3.5 drops its empty think block), so the next
        prompt shares its head with this one up to that boundary, not to the end."""
        end = len(tokens) - 1
        if not conversation or self.keep <= 0 or end <= held:
            return held
        keep_at = boundary if boundary is not None and held <= boundary <= end else end
        self._read(cache, tokens, held, keep_at)
        self._snapshots[conversation] = (list(tokens[:keep_at]), copy.deepcopy(cache))
        self._snapshots.move_to_end(conversation)
        while len(self._snapshots) > self.keep:
            self._snapshots.popitem(last=False)
        self._read(cache, tokens, keep_at, end)
        return end

    def _read(self, cache: list, tokens: list[int], start: int, end: int) -> None:
        """Prefill tokens[start:end] into the cache through the model's layers (no output head)."""
        import mlx.core as mx

        from agent.llm.prefix_cache import _trunk

        layers = _trunk(self.model)
        for at in range(start, end, self.step_size):
            layers(mx.array(tokens[at : min(at + self.step_size, end)])[None], cache=cache)
            mx.eval([c.state for c in cache])

    def forget(self, conversation: str | None = None) -> None:
        """Drop one conversation's snapshot, or all of them."""
        if conversation is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop(conversation, None)

    def report(self) -> dict:
        return self.stats.report(len(self._snapshots))
