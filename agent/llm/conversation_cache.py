"""Every model call of a conversation prefills only what is new.

The prefix cache (prefix_cache.py) covers the system prompt and tools. Everything after it —
the history, the new message, and inside a turn the model's own tool call and the tool's
result — would otherwise be prefilled again on every call. Qwen3.5's Gated-DeltaNet layers
keep a state that cannot be trimmed back, so a cache cannot be cut to the common prefix of
two prompts; instead each call leaves two snapshots for its conversation (three inside a tool
turn), with the tokens each holds:

- "message": taken while the prompt is read, at the end of its last message (before the
  generation prompt). Chat templates render a finished assistant turn differently from the
  prompt it was written after (Qwen3.5 drops its empty think block), so the next user
  message shares its head with this prompt up to there, not to the end.
- "reply": the call's own cache after generating, holding the prompt and every token the
  model wrote (no copy: the call is done with it). Inside a turn the template renders the
  model's tool call exactly as written, so the next call reads only the tool's result.
- "turn": kept by the calls that go on after a tool's result: the first call's "message"
  snapshot, at the end of the user's message that began the turn. Once the turn is over the
  template renders its tool calls without their think blocks, so the next user message shares
  its head with the turn's first prompt only up to there: without it, the whole history after
  a tool turn would be read again.

The next call starts from a copy of the longest snapshot whose tokens are an exact head of its
prompt — compared token by token, never assumed — and prefills only the rest. When none is
(the template renders a past turn differently, the tools changed), it falls back to the
prefix cache, so the answer is always the same as without this cache.

Memory is bounded by a byte budget, measured from the snapshots' own arrays (the attention
layers' keys and values as allocated, the linear-attention layers' states). Over it the
oldest snapshots are dropped first; a conversation's snapshots are renewed together at each
call, so whole conversations go least recently used first. The prefix cache is outside the
budget: it is the floor every conversation falls back to.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MB = 1024 * 1024


def cache_nbytes(cache: list) -> int:
    """Bytes held by a model cache's arrays (mlx-lm's per-layer `nbytes`: KV buffers as
    allocated, linear-attention conv and recurrent states)."""
    return sum(layer.nbytes for layer in cache)


@dataclass
class Snapshot:
    tokens: list[int]
    cache: list
    nbytes: int


@dataclass
class ConversationStats:
    hits: int = 0
    misses: int = 0
    tokens_reused: int = 0
    evicted: int = 0  # snapshots dropped to stay within the budget

    def hit_rate(self) -> float | None:
        calls = self.hits + self.misses
        return round(self.hits / calls, 3) if calls else None


class ConversationCache:
    """Snapshots of each conversation's cache (see the module's docstring), within a byte budget."""

    def __init__(self, model: Any, *, budget_bytes: int = 512 * MB, step_size: int = 2048):
        self.model = model
        self.budget_bytes = budget_bytes
        self.step_size = step_size
        self.stats = ConversationStats()
        # (conversation, "message" | "reply") -> snapshot, least recently used first
        self._snapshots: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._snapshots.values())

    def conversations(self) -> set[str]:
        return {conversation for conversation, _ in self._snapshots}

    def fetch(self, conversation: str | None, tokens: list[int]) -> tuple[list, int] | None:
        """(a copy of the conversation's longest cache whose tokens are an exact head of `tokens`
        with something left to feed, how many tokens it holds); None when there is none."""
        if not conversation or self.budget_bytes <= 0:
            return None
        usable = [s for key, s in self._snapshots.items() if key[0] == conversation
                  and len(s.tokens) < len(tokens) and tokens[: len(s.tokens)] == s.tokens]
        if not usable:
            self.stats.misses += 1
            return None
        best = max(usable, key=lambda s: len(s.tokens))
        self.stats.hits += 1
        self.stats.tokens_reused += len(best.tokens)
        return copy.deepcopy(best.cache), len(best.tokens)

    def read_and_keep(self, conversation: str | None, cache: list, tokens: list[int], held: int,
                      boundary: int | None = None, *, continues_turn: bool = False) -> int:
        """Read `tokens[held:-1]` into `cache` (it holds `tokens[:held]`), keeping a copy at
        `boundary` (the end of the last message) as the conversation's "message" snapshot; return
        how many tokens the cache now holds (the last one is left for the generation, which
        needs its logits). `continues_turn`: the prompt ends with a tool's result, so the
        snapshot at the start of the turn is kept (as "turn") for the next user message."""
        end = len(tokens) - 1
        if not conversation or self.budget_bytes <= 0 or end <= held:
            return held
        keep_at = boundary if boundary is not None and held <= boundary <= end else end
        self._read(cache, tokens, held, keep_at)
        start = self._turn_start(conversation, tokens) if continues_turn else None
        self.forget(conversation)  # this call's snapshots replace the last call's
        if start is not None:
            self._snapshots[(conversation, "turn")] = start
        self._keep(conversation, "message", tokens[:keep_at], cache, copy_it=True)
        self._read(cache, tokens, keep_at, end)
        return end

    def keep_reply(self, conversation: str | None, cache: list, tokens: list[int]) -> None:
        """Keep a call's own cache after it generated, holding `tokens` (prompt + generated), as
        the conversation's "reply" snapshot; the call must not use the cache again."""
        if conversation and self.budget_bytes > 0:
            self._keep(conversation, "reply", list(tokens), cache, copy_it=False)

    def _turn_start(self, conversation: str, tokens: list[int]) -> Snapshot | None:
        """The snapshot at the end of the user's message that began this turn: the turn's, once a
        second tool round is under way, else the first call's "message" one; None unless it is
        a head of `tokens`."""
        for kind in ("turn", "message"):
            snapshot = self._snapshots.get((conversation, kind))
            if snapshot is not None:
                return snapshot if tokens[: len(snapshot.tokens)] == snapshot.tokens else None
        return None

    def _keep(self, conversation: str, kind: str, tokens: list[int], cache: list, *, copy_it: bool) -> None:
        """Keep a snapshot, then drop the oldest ones until all of them fit the budget."""
        size = cache_nbytes(cache)  # a deep copy holds the same arrays: measured before copying
        if size > self.budget_bytes:
            log.info("conversation %s: its %s cache (%.1f MB) is over the whole budget (%.1f MB); not kept",
                     conversation, kind, size / MB, self.budget_bytes / MB)
            return
        self._snapshots[(conversation, kind)] = Snapshot(list(tokens), copy.deepcopy(cache) if copy_it else cache, size)
        while self.nbytes > self.budget_bytes:
            dropped, _ = self._snapshots.popitem(last=False)
            self.stats.evicted += 1
            log.debug("conversation cache over budget: %s's %s snapshot dropped", *dropped)

    def _read(self, cache: list, tokens: list[int], start: int, end: int) -> None:
        """Prefill tokens[start:end] into the cache through the model's layers (no output head)."""
        import mlx.core as mx

        from agent.llm.prefix_cache import _trunk

        layers = _trunk(self.model)
        for at in range(start, end, self.step_size):
            layers(mx.array(tokens[at : min(at + self.step_size, end)])[None], cache=cache)
            mx.eval([c.state for c in cache])

    def forget(self, conversation: str | None = None) -> None:
        """Drop one conversation's snapshots, or all of them."""
        if conversation is None:
            self._snapshots.clear()
        else:
            for kind in ("turn", "message", "reply"):
                self._snapshots.pop((conversation, kind), None)

    def report(self) -> dict:
        """Its part of `agentd status`: size and budget in MB, conversations kept, hit rate."""
        size = self.nbytes
        return {"conversations": len(self.conversations()), "size_mb": round(size / MB, 2), "bytes": size,
                "budget_mb": round(self.budget_bytes / MB, 2), "hits": self.stats.hits, "misses": self.stats.misses,
                "hit_rate": self.stats.hit_rate(), "tokens_reused": self.stats.tokens_reused,
                "evicted": self.stats.evicted}
