"""A bigger model on another machine: any OpenAI-compatible chat server (mlx_lm.server on a
bigger Mac, llama.cpp's server, vLLM, Ollama) as agentd's engine (`model.backend: openai`).

The turn, the tools, the executor, voice and the schedule run unchanged: this engine streams
the server's reply as the same `Chunk`s and `Finished` as the MLX engine. The server parses
tool calls itself and streams them as structured deltas; they are gathered as they arrive and
handed to the turn as `<tool_call>{"name": ..., "arguments": ...}</tool_call>` text, which
mlx-lm's own JSON tool-call parser reads back (`tool_format`). Reasoning deltas become the
`<think>` block the turn already knows.

What a remote engine cannot offer, `status()` says: agentd's prefix cache (the server may have
its own) and constrained tool calls (the grammar needs the logits).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, AsyncIterator
from urllib.parse import urlparse

import httpx

from agent.llm.types import Chunk, Finished, Request, ToolFormat
from agent.llm.prefix_cache import PrefixStats
from agent.llm.stream import Tags
from agent.llm.warmup import WarmUp

log = logging.getLogger(__name__)


class EngineUnavailable(ConnectionError):
    """The model server cannot be reached, refuses the request, or stopped answering."""


class NoPrefixCache:
    """The figures a prefix cache reports, all zero: the prompt is the server's business."""

    def __init__(self) -> None:
        self.stats = PrefixStats()

    def clear(self) -> None:
        pass


class RemoteEngine:
    """The LLM protocol of agent.turn over an OpenAI-compatible `/chat/completions`."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 60.0, tags: Tags = Tags()):
        self.base_url = base_url.rstrip("/")
        self.path = self.base_url  # what `model.path` is for a local model (reload compares it)
        self.model = model
        self.timeout_s = timeout_s
        self.tags = tags
        self.tool_format = ToolFormat(tags=tags, parse=_json_tool_parser())
        self.prefix_cache = NoPrefixCache()
        self.warmup = WarmUp()
        self.warmup.finish("nothing to prefill here: the server keeps its own caches")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @classmethod
    def from_settings(cls, remote: Any) -> "RemoteEngine":
        api_key = os.environ.get(remote.api_key_env) if remote.api_key_env else None
        if remote.api_key_env and not api_key:
            log.warning("model.remote.api_key_env names %s, which is not set: no key is sent", remote.api_key_env)
        return cls(remote.base_url, model=remote.model, api_key=api_key, timeout_s=remote.timeout_s)

    @property
    def name(self) -> str:
        return f"{self.model or 'remote model'} at {urlparse(self.base_url).netloc}"

    def status(self) -> dict:
        return {"backend": "openai", "engine_url": self.base_url,
                "not_offered_remotely": ["prefix cache (the server may keep its own)", "constrained tool calls"]}

    async def stream(self, request: Request, cancel: threading.Event | None = None) -> AsyncIterator[Chunk | Finished]:
        """Stream one reply: text, thinking and tool calls as text chunks, then the figures."""
        started = time.monotonic()
        reply = _Reply(self.tags, thinking=request.thinking)
        finish, usage, first = "stop", {}, None
        timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        try:
            async with httpx.AsyncClient(timeout=timeout, headers=self._headers) as client:
                async with client.stream("POST", f"{self.base_url}/chat/completions", json=self._body(request)) as response:
                    await _check(response, self.base_url)
                    async for data in _events(response):
                        if cancel is not None and cancel.is_set():
                            finish = "cancelled"
                            break
                        usage = data.get("usage") or usage
                        for choice in data.get("choices") or []:
                            for text in reply.take(choice.get("delta") or {}):
                                first = first or time.monotonic()
                                yield Chunk(text)
                            finish = _finish_reason(choice.get("finish_reason")) or finish
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the model server at {self.base_url} {_what_failed(exc)}") from None
        for text in reply.finish():
            yield Chunk(text)
        generated = usage.get("completion_tokens") or reply.pieces
        elapsed = time.monotonic() - (first or started)
        yield Finished(
            finish_reason=finish, prompt_tokens=usage.get("prompt_tokens", 0), generated_tokens=generated,
            tokens_per_s=round(generated / elapsed, 2) if elapsed > 0 else 0.0,
            time_to_first_token_s=round((first or time.monotonic()) - started, 4),
            prefix_hit=False, prefix_tokens_reused=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
        )

    def _body(self, request: Request) -> dict:
        s = request.sampling
        body = {
            "messages": [_wire_message(m) for m in request.messages], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": request.max_tokens,
            "temperature": s.temperature, "top_p": s.top_p, "presence_penalty": s.presence_penalty,
            # Qwen-family servers (mlx_lm.server, vLLM, llama.cpp) read the chat template's switch here.
            "chat_template_kwargs": {"enable_thinking": request.thinking},
        }
        if self.model:
            body["model"] = self.model
        if request.tools:
            body["tools"] = request.tools
        return body

    def forget_prompts(self) -> None:
        """Nothing kept here."""

    def warm_up(self, system_prompt: str, tools: list[dict], *, constrained: bool = False) -> None:
        """Nothing to prefill here; the server keeps its own caches."""

    def close(self) -> None:
        pass


class _Reply:
    """Turns streamed deltas into the text the turn's StreamSplitter reads."""

    def __init__(self, tags: Tags, *, thinking: bool):
        self.tags = tags
        self.thinking = thinking  # the turn's splitter starts inside <think> when thinking is on
        self.calls: dict[int, dict] = {}
        self.pieces = 0

    def take(self, delta: dict) -> list[str]:
        out = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and self.thinking:
            out.append(reasoning)
        if delta.get("content") or delta.get("tool_calls"):
            out.extend(self._end_thinking())
        if delta.get("content"):
            out.append(delta["content"])
        for part in delta.get("tool_calls") or []:
            call = self.calls.setdefault(part.get("index", len(self.calls)), {"name": "", "arguments": ""})
            function = part.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
        self.pieces += len(out)
        return out

    def finish(self) -> list[str]:
        """The tool calls, whole, once the stream has ended."""
        out = self._end_thinking() if self.calls else []
        for call in self.calls.values():
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = call["arguments"]  # the turn reports it as the model's mistake
            out.append(f"{self.tags.tool_start}{json.dumps({'name': call['name'], 'arguments': arguments})}{self.tags.tool_end}")
        self.calls = {}
        return out

    def _end_thinking(self) -> list[str]:
        if not self.thinking:
            return []
        self.thinking = False
        return [self.tags.think_end]


async def _check(response: httpx.Response, base_url: str) -> None:
    if response.status_code == 200:
        return
    body = (await response.aread()).decode("utf-8", "replace")[:300]
    hint = " (check model.remote.api_key_env)" if response.status_code in (401, 403) else ""
    raise EngineUnavailable(f"the model server at {base_url} answered {response.status_code}{hint}: {body.strip()}")


async def _events(response: httpx.Response) -> AsyncIterator[dict]:
    """The JSON payloads of a server-sent event stream, until [DONE]."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank lines, ": keepalive" comments
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except json.JSONDecodeError:
            log.warning("the model server sent a line that is not JSON: %r", payload[:200])


def _wire_message(message: dict) -> dict:
    """A history message as the OpenAI API wants it: tool-call arguments as JSON text."""
    if not message.get("tool_calls"):
        return message
    calls = [{**c, "function": {**c["function"], "arguments": c["function"]["arguments"]
                                if isinstance(c["function"]["arguments"], str) else json.dumps(c["function"]["arguments"])}}
             for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def _finish_reason(reason: str | None) -> str | None:
    """The server's finish reason in the engine's words (a tool call is a normal stop)."""
    return {"tool_calls": "stop", "function_call": "stop"}.get(reason, reason) if reason else None


def _what_failed(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot be reached (is it running, and is model.remote.base_url right?)"
    if isinstance(exc, httpx.TimeoutException):
        return "did not answer in time (model.remote.timeout_s)"
    return f"stopped answering mid-reply ({type(exc).__name__})"


def _json_tool_parser() -> Any:
    from mlx_lm.tool_parsers import json_tools

    return json_tools.parse_tool_call
