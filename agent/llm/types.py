"""The seam between the turn and a model backend: what a model call asks for (Request), what
comes back (Chunk ... Finished), how the model writes tool calls (ToolFormat), and the LLM
protocol every engine follows (agent.llm.mlx_engine, agent.llm.remote_engine, tests' fakes).
No MLX here: the turn imports this without loading a model library.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Protocol

from agent.llm.call_watch import CallTrace
from agent.llm.stream import Tags


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters (Qwen3.5's recommended non-thinking defaults unless configured)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    presence_penalty: float = 1.5


@dataclass(frozen=True)
class Chunk:
    """A decoded piece of text from the model."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of one model call, with its figures."""

    finish_reason: str  # stop | length | cancelled | constraint (a tool call abandoned by the floor)
    prompt_tokens: int
    generated_tokens: int
    tokens_per_s: float
    time_to_first_token_s: float
    prefix_hit: bool
    prefix_tokens_reused: int
    # Constrained only: one per tool call started, in order (see llm/call_watch.py).
    call_traces: tuple[CallTrace, ...] = ()


@dataclass(frozen=True)
class ToolFormat:
    """How this model writes tool calls: tags and mlx-lm's parser for the body."""

    tags: Tags
    parse: Callable[[str, list[dict] | None], dict]


@dataclass(frozen=True)
class Picture:
    """An image for the model, already shrunk to vision.max_pixels and encoded (PNG or JPEG).

    A user message carries its pictures under an "images" key for the current turn only;
    the stored history keeps `placeholder` instead of the bytes."""

    data: bytes
    width: int
    height: int

    @property
    def placeholder(self) -> str:
        return f"[image {self.width}x{self.height}]"

    @property
    def tokens(self) -> int:
        """About how many prompt tokens it costs: one per 32x32 pixels (Qwen3.5's patch 16,
        merged 2x2), at least 64."""
        return max(64, round(self.width / 32) * round(self.height / 32))


def pictures_in(messages: list[dict]) -> list[Picture]:
    """Every picture the messages carry, in order."""
    return [p for m in messages for p in m.get("images") or ()]


@dataclass
class Request:
    messages: list[dict]
    tools: list[dict]
    thinking: bool
    max_tokens: int
    sampling: Sampling
    logits_processors: list = field(default_factory=list)
    constrained: bool = False  # tool calls follow the tools' schemas (see constrained.py)
    thinking_budget: int | None = None  # thinking tokens before </think> is forced
    # False: neither use nor replace the kept prefix (another program's system prompt must not
    # evict agentd's own, which every voice and chat turn starts from).
    prefix_cache: bool = True
    # The conversation this call belongs to: its cache continues from its last call's prompt
    # (llm/conversation_cache.py). None: every call starts from the prefix.
    conversation: str | None = None


class LLM(Protocol):
    """What a turn needs from a model backend (the MLX engine, a remote one, or a scripted fake in tests)."""

    name: str
    tool_format: ToolFormat

    def stream(self, request: Request, cancel: threading.Event | None = None) -> AsyncIterator[Chunk | Finished]: ...
