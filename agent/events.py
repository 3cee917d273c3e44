"""Events: small frozen, keyword-only dataclasses that every front end understands.

A turn yields step events (TextDelta ... ReplyDone); doors (chat, voice, schedule) put
request events on the daemon's queue. `to_dict`/`from_dict` give their JSON form, without
the fields marked `LOCAL` (data for code in this process, such as a tool's device states).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

_frozen = dataclass(frozen=True, kw_only=True)
# metadata of a field that stays in the process: never in an event's JSON form
LOCAL = {"local": True}


@_frozen
class TextDelta:
    """A piece of the reply as it streams."""

    text: str


@_frozen
class ThinkingDelta:
    """A piece of the model's thinking (shown dimmed, if at all)."""

    text: str


@_frozen
class ToolStarted:
    call_id: str
    name: str
    arguments: dict
    risk: str


@_frozen
class ToolFinished:
    """A tool call's end. `outcome` is the executor's status (agent.actions.STATUSES):
    ok | error | crashed | denied | invalid | timeout | cancelled. `result` is the text the
    model reads; `data` is the tool's own data beside it (agent.tools.ToolResult), or None."""

    call_id: str
    name: str
    result: str
    ok: bool
    duration_s: float
    outcome: str = "ok"
    data: Any = field(default=None, compare=False, repr=False, metadata=LOCAL)


@_frozen
class ProposedCall:
    """A tool call the model wrote for a caller's own tools (the API's pass-through): handed
    back to the caller, never run here."""

    call_id: str
    name: str
    arguments: dict


@_frozen
class Note:
    """Something the user should know that is not part of the reply (a bad tool call, a guard)."""

    text: str
    level: str = "warning"


@_frozen
class TurnStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_calls: int = 0
    tokens_per_s: float = 0.0
    time_to_first_token_s: float = 0.0
    prefix_hit: bool = False
    prefix_tokens_reused: int = 0
    duration_s: float = 0.0
    # Calls that ran a tool the grammar chose rather than the one the model started to name.
    coerced_calls: int = 0
    # (tokens prefilled, tokens reused from a prompt cache) for each model call, in order; the
    # totals are prompt_tokens - prefix_tokens_reused and prefix_tokens_reused.
    per_call: tuple[tuple[int, int], ...] = ()

    def prefill_line(self) -> str:
        """A short line on the prompt caches: "prefilled 98+21 tokens, reused 0+98"."""
        if not self.per_call:
            return ""
        prefilled = "+".join(str(p) for p, _ in self.per_call)
        return f"prefilled {prefilled} tokens, reused {'+'.join(str(r) for _, r in self.per_call)}"


@_frozen
class ReplyDone:
    """The turn is over: the final reply text and how it went."""

    text: str
    stopped_by: str = "done"  # done | guard | cancelled | error
    # Which guard, or why a done reply is short: max_model_calls | invalid_call | repeated_call |
    # turn_timeout | max_tokens | engine (the model server failed) | "" (nothing to say).
    reason: str = ""
    stats: TurnStats = field(default_factory=TurnStats)


StepEvent = TextDelta | ThinkingDelta | ToolStarted | ToolFinished | ProposedCall | Note | ReplyDone
STEP_EVENTS: dict[str, type] = {
    cls.__name__: cls for cls in (TextDelta, ThinkingDelta, ToolStarted, ToolFinished, ProposedCall, Note, ReplyDone)
}


def to_dict(event: Any) -> dict:
    """JSON-ready form of an event, with its type name."""
    local = _LOCAL_FIELDS.get(type(event), ())
    if local:  # asdict would deep-copy what never leaves the process
        event = dataclasses.replace(event, **dict.fromkeys(local))
    data = dataclasses.asdict(event)
    for name in local:
        del data[name]
    return {"type": type(event).__name__, **data}


def shallow_dict(event: Any) -> dict:
    """An event's fields without copying them (those marked LOCAL left out)."""
    local = _LOCAL_FIELDS.get(type(event), ())
    return {k: v for k, v in vars(event).items() if k not in local}


_LOCAL_FIELDS: dict[type, tuple[str, ...]] = {
    cls: names for cls in STEP_EVENTS.values()
    if (names := tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("local")))
}


def from_dict(data: dict) -> Any:
    """Rebuild a step event from `to_dict` output; KeyError/TypeError on a bad payload."""
    data = dict(data)
    cls = STEP_EVENTS[data.pop("type")]
    if cls is ReplyDone and isinstance(data.get("stats"), dict):
        stats = dict(data["stats"])
        stats["per_call"] = tuple(tuple(pair) for pair in stats.get("per_call", ()))  # JSON made them lists
        data["stats"] = TurnStats(**stats)
    return cls(**data)
