"""Pass-through generation: a client's own messages and tools, the model's calls handed back.

Nothing runs here: the model's tool calls come out as `ProposedCall` events for the client to
run (it owns those tools). The job is queued like a turn (`Daemon.submit(job=...)`), so it
takes the one model in its turn, and it leaves agentd's prefix cache alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from agent.events import ProposedCall, ReplyDone, TextDelta, ThinkingDelta, TurnStats
from agent.llm.types import Finished, Request
from agent.llm.stream import Piece, StreamSplitter
from agent.tool_calls import parse_call

if TYPE_CHECKING:
    from agent.api.chat import ChatCall


class ClientTools:
    """The client's tool list where the call parser expects a registry (it reads `schemas()`)."""

    def __init__(self, tools: list[dict]):
        self.tools = tools

    def schemas(self) -> list[dict]:
        return self.tools


def passthrough_job(agent: Any, call: "ChatCall") -> Callable[[asyncio.Event], AsyncIterator[Any]]:
    """The queue job that generates for `call` with the agent's model and sampling settings."""
    thinking = agent.thinking if call.thinking is None else call.thinking
    sampling = agent.thinking_sampling if thinking else agent.sampling
    overrides = {k: v for k, v in (("temperature", call.temperature), ("top_p", call.top_p)) if v is not None}
    request = Request(
        messages=call.messages, tools=call.tools or [], thinking=thinking,
        max_tokens=call.max_tokens or agent.limits.max_tokens, sampling=dataclasses.replace(sampling, **overrides),
        prefix_cache=False,
    )

    async def job(cancel: asyncio.Event) -> AsyncIterator[Any]:
        async for event in generate(agent.llm, request, ClientTools(call.tools or []), cancel):
            yield event

    return job


async def generate(engine: Any, request: Request, tools: ClientTools, cancel: asyncio.Event) -> AsyncIterator[Any]:
    """Stream one generation as TextDelta / ThinkingDelta / ProposedCall, then a ReplyDone."""
    started = time.monotonic()
    tool_format = engine.tool_format
    splitter = StreamSplitter(tool_format.tags, thinking=request.thinking)
    stop = threading.Event()
    finished: Finished | None = None
    text: list[str] = []
    stream = engine.stream(request, stop)
    try:
        async for item in stream:
            if isinstance(item, Finished):
                finished = item
                continue
            if cancel.is_set():
                break
            for event in _events(splitter.feed(item.text), tool_format, tools):
                text.append(event.text if isinstance(event, TextDelta) else "")
                yield event
    finally:
        stop.set()
        await stream.aclose()
    for event in _events(splitter.finish(), tool_format, tools):
        text.append(event.text if isinstance(event, TextDelta) else "")
        yield event
    f = finished
    stats = TurnStats(
        prompt_tokens=f.prompt_tokens if f else 0, generated_tokens=f.generated_tokens if f else 0, model_calls=1,
        tokens_per_s=round(f.tokens_per_s, 2) if f else 0.0,
        time_to_first_token_s=round(f.time_to_first_token_s, 4) if f else 0.0,
        duration_s=round(time.monotonic() - started, 4),
        per_call=((f.prompt_tokens - f.prefix_tokens_reused, f.prefix_tokens_reused),) if f else (),
    )
    stopped_by = "cancelled" if cancel.is_set() else "done"
    reason = "max_tokens" if f is not None and f.finish_reason == "length" else ""
    yield ReplyDone(text="".join(text).strip(), stopped_by=stopped_by, reason=reason, stats=stats)


def _events(pieces: list[Piece], tool_format: Any, tools: ClientTools) -> list[Any]:
    events: list[Any] = []
    for piece in pieces:
        if piece.kind == "text":
            events.append(TextDelta(text=piece.text))
        elif piece.kind == "thinking":
            events.append(ThinkingDelta(text=piece.text))
        else:
            call = parse_call(piece.kind, piece.text, None, tool_format, tools)
            if call.error or not isinstance(call.arguments, dict):
                # A call the parser cannot read goes back as the text the model wrote: the
                # client sees what happened rather than nothing.
                tags = tool_format.tags
                closing = tags.tool_end if piece.kind == "tool_call" else ""
                events.append(TextDelta(text=f"{tags.tool_start}{piece.text}{closing}"))
            else:
                events.append(ProposedCall(call_id=f"call_{call.call_id}", name=call.name, arguments=call.arguments))
    return events
