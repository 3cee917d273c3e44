"""Fit a turn's messages into the model's context window.

A long conversation, or tool results that pile up within a turn, can outgrow what the model
reads at once (prompt + `max_tokens` of reply). Rather than fail or let the model read a
truncated prompt, the oldest parts go first: whole earlier exchanges (a user message and what
answered it, so no tool result loses its call), then this turn's tool results, oldest first,
each cut to one line. The system prompt and tools (the cached prefix) and the person's
current message are never touched. The turn says so in one short note.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agent.llm.types import pictures_in

TRIMMED = "[cut to fit the model's context: {n} characters of tool output]"


@dataclass(frozen=True)
class Fit:
    """Messages that fit, and what had to go."""

    messages: list[dict]
    window: int | None = None
    tokens: int = 0
    dropped: int = 0  # earlier messages left out
    shortened: int = 0  # tool results of this turn cut to a line

    def note(self) -> str | None:
        """The line the person sees when something was left out; None when nothing was."""
        if not (self.dropped or self.shortened):
            return None
        parts = [f"the oldest {self.dropped} messages were left out"] if self.dropped else []
        if self.shortened:
            parts.append(f"{self.shortened} tool result{'s' * (self.shortened > 1)} shortened")
        return f"The conversation is longer than the model's context ({self.window} tokens): {' and '.join(parts)}."


def fit_turn(agent: Any, messages: list[dict], *, thinking: bool) -> Fit:
    """The messages of the next model call, trimmed to the agent's model's window if need be."""
    llm = agent.llm
    window = model_window(llm, getattr(agent, "settings", None))
    if window is None or not (hasattr(llm, "render") and hasattr(llm, "encode")):
        return Fit(list(messages))  # a model that cannot count tokens (a test's scripted one)
    tools = agent.registry.schemas()
    # A picture renders as one pad token that becomes Picture.tokens image tokens.
    budget = window - agent.limits.max_tokens - sum(p.tokens for p in pictures_in(messages))
    # A byte-level BPE token is at least one byte, so the JSON of it all plus the template's
    # wrapping bounds the prompt's tokens: most turns are far below and skip the counting.
    if len(json.dumps([messages, tools], ensure_ascii=False, default=_placeholder).encode()) + 32 * len(messages) + 1024 <= budget:
        return Fit(list(messages), window)

    def count(candidate: list[dict]) -> int:
        return len(llm.encode(llm.render(candidate, tools, thinking=thinking)))

    return fit(messages, count=count, budget=budget, window=window)


def fit(messages: list[dict], *, count: Callable[[list[dict]], int], budget: int, window: int | None = None) -> Fit:
    """Drop the oldest exchanges, then shorten this turn's oldest tool results, until `count` <= budget."""
    tokens = count(messages)
    if tokens <= budget:
        return Fit(list(messages), window, tokens)
    head = messages[:1] if messages and messages[0].get("role") == "system" else []
    rest = messages[len(head):]
    current = max((i for i, m in enumerate(rest) if m.get("role") == "user"), default=0)
    history, turn = rest[:current], list(rest[current:])
    dropped = shortened = 0
    while history and tokens > budget:
        cut = next((i for i, m in enumerate(history) if i and m.get("role") == "user"), len(history))
        history, dropped = history[cut:], dropped + cut
        tokens = count([*head, *history, *turn])
    for i, message in enumerate(turn):
        if tokens <= budget:
            break
        content = message.get("content") or ""
        if message.get("role") == "tool" and len(content) > len(TRIMMED) + 10:
            turn[i] = {**message, "content": TRIMMED.format(n=len(content))}
            shortened += 1
            tokens = count([*head, *history, *turn])
    return Fit([*head, *history, *turn], window, tokens, dropped, shortened)


def model_window(llm: Any, settings: Any = None) -> int | None:
    """model.context_window if set, else the model's max_position_embeddings, else None."""
    configured = getattr(getattr(settings, "model", None), "context_window", None)
    if configured:
        return configured
    path = getattr(llm, "path", None)
    return _config_window(Path(path)) if path else None


@functools.lru_cache(maxsize=8)
def _config_window(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        if isinstance(section.get("max_position_embeddings"), int):
            return section["max_position_embeddings"]
    return None


def _placeholder(value: Any) -> str:
    """A picture's stand-in in the JSON size bound (its tokens are counted on their own)."""
    return getattr(value, "placeholder", None) or repr(value)
