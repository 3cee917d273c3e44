"""OpenAI-compatible routes: /v1/models and /v1/chat/completions (JSON, or SSE when streaming).

Tool calls go out as `tool_calls` (streamed as the call's name, then its arguments as one
delta: a Qwen3.5 call is whole only at its closing tag); thinking as `reasoning_content`, the
field other local servers use; usage from the turn's figures.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from agent.api.chat import ChatCall, collect, failure, finish_reason, template_messages
from agent.api.errors import read_body
from agent.events import Note, ProposedCall, ReplyDone, TextDelta, ThinkingDelta


class ChatCompletionRequest(BaseModel):
    """The fields agentd reads; others (n, seed, tool_choice, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    messages: list[dict]
    stream: bool = False
    tools: list[dict] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream_options: dict | None = None
    reasoning_effort: str | None = None
    chat_template_kwargs: dict | None = None  # vLLM's way to say enable_thinking

    def chat_call(self) -> ChatCall:
        thinking = None
        if self.reasoning_effort is not None:
            thinking = self.reasoning_effort != "none"
        if self.chat_template_kwargs and "enable_thinking" in self.chat_template_kwargs:
            thinking = bool(self.chat_template_kwargs["enable_thinking"])
        return ChatCall(messages=template_messages(self.messages), tools=self.tools or None, thinking=thinking,
                        max_tokens=self.max_completion_tokens or self.max_tokens, temperature=self.temperature,
                        top_p=self.top_p)


def routes(api: Any) -> list[Route]:
    """The /v1 routes, served by `api` (server.ApiContext)."""

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [api.model.openai()]})

    async def chat_completions(request: Request) -> Any:
        body = await read_body(request, ChatCompletionRequest)
        api.model.check(body.model)
        call = body.chat_call()
        api.check_ready()
        await api.backend.take_pictures(call)
        reply_id, name = f"chatcmpl-{uuid.uuid4().hex[:24]}", api.model.name
        events = api.backend.events(call)
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(sse(events, reply_id, name, usage), media_type="text/event-stream")
        return JSONResponse(await completion(events, reply_id, name))

    return [
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]


async def completion(events: AsyncIterator[Any], reply_id: str, model: str) -> dict:
    """A whole chat.completion object."""
    reply = await collect(events)
    return {
        "id": reply_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": reply.message("reasoning_content", openai_call),
                     "finish_reason": finish_reason(reply.done, bool(reply.calls))}],
        "usage": usage_of(reply.done),
    }


async def sse(events: AsyncIterator[Any], reply_id: str, model: str, include_usage: bool) -> AsyncIterator[str]:
    """chat.completion.chunk events as Server-Sent Events, ending with `data: [DONE]`."""
    created, calls, error = int(time.time()), 0, ""

    def chunk(delta: dict, finish: str | None = None) -> str:
        body = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return data(body)

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        if isinstance(event, TextDelta):
            yield chunk({"content": event.text})
        elif isinstance(event, ThinkingDelta):
            yield chunk({"reasoning_content": event.text})
        elif isinstance(event, ProposedCall):
            whole = openai_call(event)
            yield chunk({"tool_calls": [{"index": calls, "id": whole["id"], "type": "function",
                                         "function": {"name": event.name, "arguments": ""}}]})
            yield chunk({"tool_calls": [{"index": calls, "function": {"arguments": whole["function"]["arguments"]}}]})
            calls += 1
        elif isinstance(event, Note) and event.level == "error":
            error = event.text
        elif isinstance(event, ReplyDone):
            problem = failure(event, error)
            if problem:  # the openai package raises APIError on an event that carries "error"
                yield data({"error": {"message": problem, "type": "server_error", "code": 500}})
                break
            yield chunk({}, finish_reason(event, calls > 0))
            if include_usage:
                yield data({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": usage_of(event)})
    yield "data: [DONE]\n\n"


def data(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\n"


def openai_call(call: ProposedCall) -> dict:
    return {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}


def usage_of(done: ReplyDone) -> dict:
    s = done.stats
    return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.generated_tokens,
            "total_tokens": s.prompt_tokens + s.generated_tokens}
