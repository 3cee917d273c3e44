"""What an API chat request becomes inside agentd, whichever protocol it came in.

Two modes, chosen by the request:
- **agentd's agent** (the client sends no tools): the last message, which must be the user's,
  runs as an ordinary turn (`who="api"`): agentd's system prompt, its own tools through the
  executor, confirm-tier tools denied unless `api.allow` names them. The client's earlier
  messages are not re-read: a client that sends back the whole exchange so far (as chat
  clients do) continues the conversation agentd stored for it; any other history starts a
  new conversation. A client's system message is ignored (agentd has its own). Pictures in
  the last user message (OpenAI `image_url` parts with data: URLs, Ollama `images`) go to
  the model with it; pictures in earlier messages are not re-read.
- **pass-through** (the client sends its own tools): the client's messages and tools are
  rendered with the model's chat template and generated as they are; the model's tool calls
  go back to the client (`ProposedCall`) and nothing runs here.
Both wait in the daemon's turn queue, since there is one model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from agent.api.errors import ApiRequestError
from agent.api.passthrough import passthrough_job
from agent.events import Note, ProposedCall, ReplyDone, TextDelta, ThinkingDelta
from agent.schedule.runner import unattended


@dataclass
class ChatCall:
    """One chat request in protocol-neutral form (messages already in chat-template shape)."""

    messages: list[dict]
    tools: list[dict] | None = None
    thinking: bool | None = None  # None: agentd's setting (model.thinking)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    pictures: tuple = ()  # the last user message's, decoded by ChatBackend.take_pictures


def template_messages(messages: list[dict]) -> list[dict]:
    """Client messages (OpenAI or Ollama shape) as the chat template wants them: text
    content, tool-call arguments as dicts (Qwen3.5's template iterates them)."""
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiRequestError(f"messages[{index}] is not a message with a role: {message!r:.80}")
        role = "system" if message["role"] == "developer" else message["role"]
        clean: dict[str, Any] = {"role": role, "content": content_text(message.get("content"))}
        images = message_images(message, index)
        if images:
            clean["images"] = images  # base64 texts here; the turn gets them as Pictures
        calls = message.get("tool_calls") or []
        if calls:
            clean["tool_calls"] = [_template_call(call, index) for call in calls]
        for key in ("tool_call_id", "name"):
            if message.get(key):
                clean[key] = message[key]
        if message.get("tool_name"):  # Ollama names the tool a result belongs to this way
            clean["name"] = message["tool_name"]
        out.append(clean)
    return out


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts (images are dropped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    raise ApiRequestError(f"message content must be text or a list of parts, got {content!r:.80}")


def message_images(message: dict, index: int) -> list[str]:
    """A message's pictures as base64: OpenAI `image_url` parts (data: URLs only, agentd does
    not fetch from the network) and Ollama's `images` list."""
    found = []
    content = message.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "image_url":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str) or not url.startswith("data:"):
                raise ApiRequestError(f"messages[{index}]: an image_url must be a data: URL with the picture in "
                                      f"base64 (agentd fetches nothing from the network), got {str(url)[:60]!r}")
            found.append(url)
    images = message.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ApiRequestError(f"messages[{index}]: images must be a list of base64 texts")
    return found + images


def _template_call(call: Any, index: int) -> dict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise ApiRequestError(f"messages[{index}]: a tool call needs function.name, got {call!r:.80}")
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):  # OpenAI sends JSON text
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise ApiRequestError(f"messages[{index}]: tool call arguments are not JSON: {arguments!r:.80}") from None
    if not isinstance(arguments, dict):
        raise ApiRequestError(f"messages[{index}]: tool call arguments must be an object, got {arguments!r:.80}")
    return {"id": call.get("id", ""), "type": "function", "function": {"name": function["name"], "arguments": arguments}}


class Conversations:
    """Which stored conversation a client's message history continues.

    Keyed by a hash of the user and assistant texts so far; after each reply the history
    including that reply points at the conversation, so the client's next request (the same
    history plus one new user message) finds it. Bounded: old entries are forgotten."""

    def __init__(self, size: int = 512):
        self.size = size
        self._ids: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def key(messages: list[dict]) -> str:
        said = [(m["role"], m["content"].strip()) for m in messages if m["role"] in ("user", "assistant")]
        return hashlib.sha256(json.dumps(said).encode()).hexdigest()

    def find(self, history: list[dict]) -> str | None:
        return self._ids.get(self.key(history)) if history else None

    def remember(self, history: list[dict], conversation_id: str) -> None:
        key = self.key(history)
        self._ids[key] = conversation_id
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


class ChatBackend:
    """Runs ChatCalls through the daemon's turn queue; yields step events ending in ReplyDone."""

    def __init__(self, daemon: Any, *, allow: list[str]):
        self.daemon = daemon
        self.allow = list(allow)
        self.conversations = Conversations()

    def events(self, call: ChatCall) -> AsyncIterator[Any]:
        """The step events of the reply to `call` (agent turn or pass-through, see the module).
        A request that cannot run raises ApiRequestError here, before anything streams."""
        if call.tools:
            if any(m.get("images") for m in call.messages):
                raise ApiRequestError("pictures are taken by agentd's own agent, not with a request's own tools; "
                                      "send the request without tools")
            return self.daemon.submit("", who="api", job=passthrough_job(self.daemon.agent, call))
        if not call.messages or call.messages[-1]["role"] != "user":
            raise ApiRequestError("the last message must be the user's (agentd answers it as a turn)")
        if not call.messages[-1]["content"].strip() and not call.messages[-1].get("images"):
            raise ApiRequestError("the last user message has no text to answer")
        return self._turn(call)

    async def take_pictures(self, call: ChatCall) -> None:
        """Decode the last user message's pictures into call.pictures, checked and shrunk,
        before anything streams (ApiRequestError, a 400, naming a bad one)."""
        from agent.images import ImageError

        if call.tools or not call.messages:
            return
        index = len(call.messages) - 1
        try:
            call.pictures = await self.daemon.decode_pictures(call.messages[-1].get("images") or [],
                                                              name=f"image {{n}} of messages[{index}]")
        except ImageError as exc:
            raise ApiRequestError(str(exc)) from None

    async def _turn(self, call: ChatCall) -> AsyncIterator[Any]:
        history, text = call.messages[:-1], call.messages[-1]["content"]
        conversation_id = self.conversations.find(history) or await self._new_conversation()
        denied: list[str] = []
        async for event in self.daemon.submit(text, who="api", conversation_id=conversation_id, images=call.pictures,
                                              thinking=call.thinking, confirm=unattended(self.allow, denied)):
            if isinstance(event, ReplyDone) and conversation_id is not None:
                self.conversations.remember([*call.messages, {"role": "assistant", "content": event.text}], conversation_id)
            yield event

    async def _new_conversation(self) -> str | None:
        if self.daemon.new_conversation is None:
            return None  # no store: the agent keeps one per turn
        return await asyncio.to_thread(self.daemon.new_conversation, "api")


@dataclass
class Reply:
    """A whole reply, for clients that asked for no streaming."""

    done: ReplyDone
    text: str = ""
    thinking: str = ""
    calls: list[ProposedCall] = field(default_factory=list)

    def message(self, thinking_field: str, call_shape: Callable[[ProposedCall], dict]) -> dict:
        """The assistant message in a protocol's words (its thinking field, its call shape)."""
        message: dict = {"role": "assistant", "content": self.text}
        if self.thinking:
            message[thinking_field] = self.thinking
        if self.calls:
            message["tool_calls"] = [call_shape(call) for call in self.calls]
        return message


async def collect(events: AsyncIterator[Any]) -> Reply:
    """Gather step events into one Reply; ApiRequestError (500) if the turn failed."""
    texts, thoughts, calls, error, done = [], [], [], "", None
    async for event in events:
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, ThinkingDelta):
            thoughts.append(event.text)
        elif isinstance(event, ProposedCall):
            calls.append(event)
        elif isinstance(event, Note) and event.level == "error":
            error = event.text
        elif isinstance(event, ReplyDone):
            done = event
    done = done or ReplyDone(text="", stopped_by="error")
    problem = failure(done, error)
    if problem:
        raise ApiRequestError(problem, 500, "server_error")
    return Reply(done, "".join(texts).strip(), "".join(thoughts).strip(), calls)


def failure(done: ReplyDone, error: str) -> str | None:
    """Why a reply failed (a turn that crashed), or None."""
    if done.stopped_by == "error":
        return error or "the turn failed (see agentd's log)"
    return None


def finish_reason(done: ReplyDone, called: bool) -> str:
    """OpenAI's finish_reason (Ollama's done_reason uses the same words)."""
    if called:
        return "tool_calls"
    return "length" if done.reason == "max_tokens" else "stop"
