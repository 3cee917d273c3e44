"""Ollama-compatible routes: /api/tags, /api/chat (NDJSON when streaming), /api/ps, /api/version,
/api/show, and /api/pull (a success for agentd's own model, which is already here).

Accepted and ignored, because agentd keeps its one model loaded with its own context:
`format`, `keep_alive`, `options.num_ctx` and the other options but temperature, top_p and
num_predict.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, AsyncIterator

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from agent.api.chat import ChatCall, collect, failure, template_messages
from agent.api.errors import read_body
from agent.events import Note, ProposedCall, ReplyDone, TextDelta, ThinkingDelta

# The Ollama API version these routes follow (clients compare it with Ollama's releases).
OLLAMA_VERSION = "0.12.0"


class OllamaChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    messages: list[dict] = []
    tools: list[dict] | None = None
    stream: bool = True
    think: bool | str | None = None  # newer Ollama also takes "low" | "medium" | "high"
    format: Any = None
    options: dict | None = None
    keep_alive: Any = None

    def chat_call(self) -> ChatCall:
        options = self.options or {}
        thinking = None if self.think is None else self.think not in (False, "false", "none")
        predict = options.get("num_predict")
        return ChatCall(messages=template_messages(self.messages), tools=self.tools or None, thinking=thinking,
                        max_tokens=predict if isinstance(predict, int) and predict > 0 else None,
                        temperature=options.get("temperature"), top_p=options.get("top_p"))


class ModelRequest(BaseModel):
    """/api/show and /api/pull: a model name (`model`, or the older `name`)."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    name: str = ""

    def model_post_init(self, _: Any) -> None:
        self.name = self.model or self.name


def routes(api: Any) -> list[Route]:
    """The /api routes, served by `api` (server.ApiContext)."""

    async def tags(request: Request) -> JSONResponse:
        return JSONResponse({"models": [api.model.ollama()]})

    async def ps(request: Request) -> JSONResponse:
        # Always loaded: agentd holds its model for as long as it runs.
        running = {**api.model.ollama(), "expires_at": "2262-01-01T00:00:00Z", "size_vram": 0, "context_length": 0}
        return JSONResponse({"models": [running]})

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": OLLAMA_VERSION})

    async def show(request: Request) -> JSONResponse:
        body = await read_body(request, ModelRequest)
        api.model.check(body.name)
        entry = api.model.ollama()
        return JSONResponse({"modelfile": "", "parameters": "", "template": "", "details": entry["details"],
                             "model_info": {}, "capabilities": ["completion", "tools", "thinking"],
                             "modified_at": entry["modified_at"]})

    async def pull(request: Request) -> JSONResponse:
        # Nothing to download: agentd's model is already here (`agentd model pull` fetches others).
        body = await read_body(request, ModelRequest)
        api.model.check(body.name)
        return JSONResponse({"status": "success"})

    async def chat(request: Request) -> Any:
        body = await read_body(request, OllamaChatRequest)
        api.model.check(body.model)
        if not body.messages:  # Ollama's way to load a model ahead of time: agentd's always is
            return JSONResponse({**head(api.model.tag), "message": {"role": "assistant", "content": ""},
                                 "done": True, "done_reason": "load"})
        call = body.chat_call()
        api.check_ready()
        await api.backend.take_pictures(call)
        events = api.backend.events(call)
        if body.stream:
            return StreamingResponse(ndjson(events, api.model.tag), media_type="application/x-ndjson")
        return JSONResponse(await whole(events, api.model.tag))

    return [
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/pull", pull, methods=["POST"]),
    ]


def head(model: str) -> dict:
    return {"model": model, "created_at": dt.datetime.now(dt.timezone.utc).isoformat()}


def ollama_call(call: ProposedCall) -> dict:
    return {"id": call.call_id, "function": {"name": call.name, "arguments": call.arguments}}


def final(model: str, done: ReplyDone, message: dict) -> dict:
    """The closing object with Ollama's figures (durations in nanoseconds)."""
    s = done.stats
    ns = 1_000_000_000
    prompt_s = s.time_to_first_token_s
    return {
        **head(model), "message": message, "done": True,
        "done_reason": "length" if done.reason == "max_tokens" else "stop",
        "total_duration": int(s.duration_s * ns), "load_duration": 0,
        "prompt_eval_count": s.prompt_tokens, "prompt_eval_duration": int(prompt_s * ns),
        "eval_count": s.generated_tokens, "eval_duration": int(max(s.duration_s - prompt_s, 0) * ns),
    }


async def whole(events: AsyncIterator[Any], model: str) -> dict:
    """One object with the whole reply (stream: false)."""
    reply = await collect(events)
    return final(model, reply.done, reply.message("thinking", ollama_call))


async def ndjson(events: AsyncIterator[Any], model: str) -> AsyncIterator[str]:
    """One JSON object per line as the reply streams; the last has done: true."""
    error = ""

    def line(message: dict) -> str:
        return json.dumps({**head(model), "message": {"role": "assistant", "content": "", **message}, "done": False}) + "\n"

    async for event in events:
        if isinstance(event, TextDelta):
            yield line({"content": event.text})
        elif isinstance(event, ThinkingDelta):
            yield line({"thinking": event.text})
        elif isinstance(event, ProposedCall):
            yield line({"tool_calls": [ollama_call(event)]})
        elif isinstance(event, Note) and event.level == "error":
            error = event.text
        elif isinstance(event, ReplyDone):
            problem = failure(event, error)
            # the ollama package raises ResponseError on a line that carries "error"
            yield json.dumps({"error": problem}) + "\n" if problem else json.dumps(final(model, event, {"role": "assistant", "content": ""})) + "\n"
