"""One agent turn: prompt -> LLM -> tool calls -> results -> LLM ... -> reply, with guards.

`Agent.respond()` yields small step events (agent.events) for any front end and always ends
with exactly one ReplyDone. Bad model output (a malformed or unknown tool call, arguments that
fail the schema, a tool call cut off at max_tokens) never executes anything: the model gets a
short error and one chance to correct itself, and the user sees a Note.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from agent.context import fit_turn
from agent.events import Note, ReplyDone, StepEvent, TextDelta, ThinkingDelta, ToolFinished, ToolStarted, TurnStats
from agent.llm.mlx_engine import Chunk, Finished, Request, Sampling, ToolFormat
from agent.llm.stream import StreamSplitter
from agent.tool_calls import ToolCall, cap_output, check_call, parse_call
from agent.tools import SystemClock, Tool, ToolContext, ToolError, ToolRegistry

log = logging.getLogger(__name__)

Confirm = Callable[[Tool, dict], Awaitable[bool]]


class LLM(Protocol):
    """What a turn needs from a model backend (MLXEngine, or a scripted fake in tests)."""

    name: str
    tool_format: ToolFormat

    def stream(self, request: Request, cancel: threading.Event | None = None) -> AsyncIterator[Chunk | Finished]: ...


@dataclass(frozen=True)
class TurnLimits:
    max_model_calls: int = 8
    max_repeated_calls: int = 3
    timeout_s: float = 120.0
    tool_output_max_chars: int = 4000
    history_messages: int = 20
    max_tokens: int = 1024


@dataclass
class _Progress:
    """What a turn has done so far (for guards and the final stats)."""

    stats: dict = field(default_factory=lambda: {"prompt_tokens": 0, "generated_tokens": 0, "model_calls": 0})
    first_token_s: float | None = None
    prefix_hit: bool = False
    prefix_reused: int = 0
    tps: float = 0.0
    seen_calls: dict = field(default_factory=dict)
    corrections_left: int = 1
    reply: list = field(default_factory=list)


class Agent:
    """The agent: a model, its tools, instructions, and where conversations are kept."""

    def __init__(
        self,
        *,
        llm: LLM,
        registry: ToolRegistry,
        system_prompt: str,
        store: Any = None,
        settings: Any = None,
        clock: Any = None,
        limits: TurnLimits = TurnLimits(),
        sampling: Sampling = Sampling(),
        thinking_sampling: Sampling = Sampling(temperature=1.0, top_p=0.95),
        thinking: bool = False,
        instructions: list[str] | None = None,
        constrained: bool = False,
        thinking_budget: int | None = None,
    ):
        self.llm = llm
        self.registry = registry
        self.base_prompt = system_prompt
        self.instructions = list(instructions or [])
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.limits = limits
        self.sampling = sampling
        self.thinking_sampling = thinking_sampling
        self.thinking = thinking
        self.constrained = constrained  # tool calls decoded under the tools' grammar
        self.thinking_budget = thinking_budget
        self.intents: Any = None  # an IntentMatcher: the fast phrase path, when skills give phrases
        self._memory: dict[str, list[dict]] = {}  # conversations when there is no store

    def system_prompt(self) -> str:
        """The fixed system text: no clock, nothing per turn, so the prefix cache holds."""
        return "\n\n".join([self.base_prompt.strip(), *(i.strip() for i in self.instructions if i.strip())])

    async def respond(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        who: str = "chat",
        thinking: bool | None = None,
        confirm: Confirm | None = None,
        cancel: asyncio.Event | None = None,
        explain: bool = False,
    ) -> AsyncIterator[StepEvent]:
        """Run one turn for the user's text; yield step events, ending with ReplyDone."""
        if conversation_id is None or not self._known(conversation_id):
            conversation_id = self._new_conversation(who)
        ctx = ToolContext(store=self.store, settings=self.settings, clock=self.clock, who=who, conversation_id=conversation_id)
        match = self.intents.match(text) if self.intents is not None else None
        if explain:
            why = self.intents.explain(text) if self.intents is not None else "model: the phrase path is off"
            yield Note(text=why, level="info")
        if match is not None:
            from agent.intents import answer_intent

            async for event in answer_intent(match, self.registry, ctx, confirm, save=lambda m: self._save(conversation_id, m)):
                yield event
            return
        history = self._history(conversation_id)
        self._save(conversation_id, {"role": "user", "content": text})
        messages = [{"role": "system", "content": self.system_prompt()}, *history, {"role": "user", "content": text}]
        run = TurnRun(self, ctx, thinking=self.thinking if thinking is None else thinking, confirm=confirm, cancel=cancel)
        async for event in run.run(messages):
            yield event

    def _new_conversation(self, who: str) -> str:
        if self.store is not None:
            return self.store.new_conversation(source=who.split(":")[0])
        return uuid.uuid4().hex

    def _known(self, conversation_id: str) -> bool:
        if self.store is None:
            return True  # in-memory conversations are created on first use
        if self.store.has_conversation(conversation_id):
            return True
        log.warning("unknown conversation %r; starting a new one", conversation_id)
        return False

    def _history(self, conversation_id: str) -> list[dict]:
        """The last messages of the conversation, starting at a user message."""
        limit = self.limits.history_messages
        if self.store is not None:
            messages = self.store.messages(conversation_id, limit=limit) if limit else []
        else:
            messages = self._memory.get(conversation_id, [])[-limit:] if limit else []
        while messages and messages[0].get("role") != "user":
            messages = messages[1:]  # never start mid tool-call exchange
        return messages

    def _save(self, conversation_id: str, message: dict) -> None:
        if self.store is not None:
            self.store.add_message(conversation_id, message)
        else:
            self._memory.setdefault(conversation_id, []).append(message)


class TurnRun:
    """The state of one running turn: messages so far, guards, figures."""

    def __init__(self, agent: Agent, ctx: ToolContext, *, thinking: bool, confirm: Confirm | None, cancel: asyncio.Event | None):
        self.agent = agent
        self.limits = agent.limits
        self.ctx = ctx
        self.thinking = thinking
        self.confirm = confirm
        self.cancel = cancel or asyncio.Event()
        self.started = time.monotonic()
        self.deadline = self.started + self.limits.timeout_s
        self.p = _Progress()
        self.trim_note: str | None = None  # what agent.context last left out, said once

    async def run(self, messages: list[dict]) -> AsyncIterator[StepEvent]:
        """The model/tool loop; always ends with one ReplyDone."""
        stopped_by, note = "guard", f"Stopped after {self.limits.max_model_calls} model calls without a final answer."
        try:
            for _ in range(self.limits.max_model_calls):
                text, calls, finish = "", [], None
                async for event in self._model_call(messages):
                    if isinstance(event, ToolCallResult):
                        text, calls, finish = event.text, event.calls, event.finish
                    else:
                        yield event
                if finish == "cancelled":
                    stopped_by, note = "cancelled", None
                    break
                if not calls:
                    self._save({"role": "assistant", "content": text})
                    stopped_by, note = "done", None
                    if finish == "length":
                        note = f"The reply was cut off at model.max_tokens ({self.limits.max_tokens} tokens)."
                    break
                guard = None
                async for event in self._run_calls(messages, text, calls):
                    if isinstance(event, _Stop):
                        guard = event
                    else:
                        yield event
                if guard:
                    stopped_by, note = guard.stopped_by, guard.note
                    break
        except TimeoutError:
            stopped_by, note = "guard", f"Stopped: the turn took longer than {self.limits.timeout_s:g} s."
        if note:
            yield Note(text=note)
        reply = "".join(self.p.reply).strip()
        if stopped_by != "done":
            reply = reply or (note or "")
            self._save({"role": "assistant", "content": reply})
        yield ReplyDone(text=reply, stopped_by=stopped_by, stats=self._stats())

    async def _model_call(self, messages: list[dict]) -> AsyncIterator[Any]:
        """Stream one generation; yield display events, then a ToolCallResult."""
        tool_format = self.agent.llm.tool_format
        splitter = StreamSplitter(tool_format.tags, thinking=self.thinking)
        sampling = self.agent.thinking_sampling if self.thinking else self.agent.sampling
        fitted = fit_turn(self.agent, messages, thinking=self.thinking)  # a conversation longer than the window
        if fitted.note() and fitted.note() != self.trim_note:
            self.trim_note = fitted.note()
            yield Note(text=self.trim_note)
        request = Request(
            messages=fitted.messages, tools=self.agent.registry.schemas(), thinking=self.thinking, max_tokens=self.limits.max_tokens,
            sampling=sampling, constrained=self.agent.constrained, thinking_budget=self.agent.thinking_budget,
        )
        stop_thread = threading.Event()
        text, raw_calls, finish = [], [], None
        self.p.stats["model_calls"] += 1
        stream = self.agent.llm.stream(request, stop_thread)
        try:
            while True:
                item = await self._next(stream)
                if item is None:
                    break
                if isinstance(item, Finished):
                    finish = item.finish_reason
                    self._count(item)
                    continue
                pieces = splitter.feed(item.text)
                if self.cancel.is_set():
                    stop_thread.set()
                    finish = "cancelled"
                for piece in pieces:
                    if piece.kind == "text":
                        text.append(piece.text)
                        self.p.reply.append(piece.text)
                        yield TextDelta(text=piece.text)
                    elif piece.kind == "thinking":
                        yield ThinkingDelta(text=piece.text)
                    else:
                        raw_calls.append((piece.kind, piece.text))
                if finish == "cancelled":
                    break
        finally:
            stop_thread.set()
            await stream.aclose()
        for piece in splitter.finish():
            if piece.kind == "text":
                text.append(piece.text)
                self.p.reply.append(piece.text)
                yield TextDelta(text=piece.text)
            elif piece.kind == "unclosed_tool_call":
                raw_calls.append((piece.kind, piece.text))
        calls = [parse_call(kind, body, finish, self.agent.llm.tool_format, self.agent.registry) for kind, body in raw_calls]
        yield ToolCallResult("".join(text).strip(), calls, finish)

    async def _next(self, stream: AsyncIterator[Any]) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation
            # (a stop) that lands just as a token arrives, and then the turn runs on.
            async with asyncio.timeout(remaining):
                return await anext(stream)
        except StopAsyncIteration:
            return None

    async def _run_calls(self, messages: list[dict], text: str, calls: list[ToolCall]) -> AsyncIterator[Any]:
        """Execute the calls of one model message (or explain what was wrong with them)."""
        problems = [check_call(call, self.agent.registry) for call in calls]
        if any(problems):
            if self.p.corrections_left <= 0:
                yield _Stop("guard", "Stopped: the model's tool call was still invalid after one correction: " + next(p for p in problems if p))
                return
            self.p.corrections_left -= 1
        assistant = {"role": "assistant", "content": text}
        good = [c for c, problem in zip(calls, problems) if not problem]
        if good:
            assistant["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in good
            ]
        bad_raw = [c.raw for c, problem in zip(calls, problems) if problem and not c.name]
        if bad_raw:
            tags = self.agent.llm.tool_format.tags
            assistant["content"] = "\n".join([text, *(f"{tags.tool_start}{raw}{tags.tool_end}" for raw in bad_raw)]).strip()
        self._append(messages, assistant)
        for call, problem in zip(calls, problems):
            if problem:
                yield Note(text=f"The model made an invalid tool call ({problem}); it gets one chance to correct it.")
                self._audit(call, "invalid", 0.0, problem)
                self._append(messages, {"role": "tool", "content": f"Error: {problem}", "tool_call_id": call.call_id})
                continue
            key = f"{call.name}:{json.dumps(call.arguments, sort_keys=True, default=str)}"
            self.p.seen_calls[key] = self.p.seen_calls.get(key, 0) + 1
            if self.p.seen_calls[key] >= self.limits.max_repeated_calls:
                yield _Stop("guard", f"Stopped: the model called {call.name} with the same arguments {self.limits.max_repeated_calls} times.")
                return
            result = ""
            async for event in self._execute(call):
                if isinstance(event, ToolFinished):
                    result = event.result
                yield event
            self._append(messages, {"role": "tool", "content": result, "name": call.name, "tool_call_id": call.call_id})

    async def _execute(self, call: ToolCall) -> AsyncIterator[StepEvent]:
        tool = self.agent.registry.get(call.name)
        shown_args = {k: v for k, v in call.arguments.items() if v is not None}
        yield ToolStarted(call_id=call.call_id, name=tool.name, arguments=shown_args, risk=tool.risk)
        started = time.monotonic()
        if tool.risk == "confirm" and not await self._confirmed(tool, call.arguments):
            self._audit(call, "denied", 0.0, "not confirmed", tool.risk)
            yield ToolFinished(call_id=call.call_id, name=tool.name, result="Denied: the user did not confirm this action, so it was not done.", ok=False, duration_s=0.0)
            return
        ok, outcome = True, "ok"
        try:
            remaining = max(self.deadline - time.monotonic(), 0.001)
            async with asyncio.timeout(remaining):
                result = await tool.call(call.arguments, self.ctx)
        except ToolError as exc:
            ok, outcome, result = False, "error", f"Error: {exc}"
        except TimeoutError:
            raise
        except Exception as exc:  # a bug in the tool: log it loudly, tell the model briefly
            log.exception("tool %s crashed", tool.name)
            ok, outcome, result = False, "crashed", f"Error: the tool {tool.name} failed unexpectedly ({type(exc).__name__})."
        duration = time.monotonic() - started
        result = cap_output(result, self.limits.tool_output_max_chars)
        self._audit(call, outcome, duration, "" if ok else result, tool.risk)
        yield ToolFinished(call_id=call.call_id, name=tool.name, result=result, ok=ok, duration_s=round(duration, 4))

    async def _confirmed(self, tool: Tool, arguments: dict) -> bool:
        if self.confirm is None:
            return False
        try:
            return bool(await self.confirm(tool, arguments))
        except Exception:
            log.exception("confirmation for %s failed; treating it as denied", tool.name)
            return False

    def _audit(self, call: ToolCall, outcome: str, duration: float, detail: str, risk: str = "") -> None:
        store = self.agent.store
        if store is None:
            return
        arguments = call.arguments if isinstance(call.arguments, dict) else {"raw": call.raw}
        store.audit(
            tool=call.name or "?", arguments=arguments, risk=risk, outcome=outcome, duration_s=duration,
            who=self.ctx.who, conversation_id=self.ctx.conversation_id, detail=detail,
        )

    def _append(self, messages: list[dict], message: dict) -> None:
        messages.append(message)
        self._save(message)

    def _save(self, message: dict) -> None:
        self.agent._save(self.ctx.conversation_id, message)

    def _count(self, f: Finished) -> None:
        s = self.p.stats
        s["prompt_tokens"] += f.prompt_tokens
        s["generated_tokens"] += f.generated_tokens
        if self.p.first_token_s is None:
            self.p.first_token_s = f.time_to_first_token_s
            self.p.prefix_hit = f.prefix_hit
        self.p.prefix_reused += f.prefix_tokens_reused
        self.p.tps = f.tokens_per_s

    def _stats(self) -> TurnStats:
        p = self.p
        return TurnStats(
            prompt_tokens=p.stats["prompt_tokens"],
            generated_tokens=p.stats["generated_tokens"],
            model_calls=p.stats["model_calls"],
            tokens_per_s=round(p.tps, 2),
            time_to_first_token_s=round(p.first_token_s or 0.0, 4),
            prefix_hit=p.prefix_hit,
            prefix_tokens_reused=p.prefix_reused,
            duration_s=round(time.monotonic() - self.started, 4),
        )


@dataclass
class ToolCallResult:
    text: str
    calls: list
    finish: str | None


@dataclass
class _Stop:
    stopped_by: str
    note: str
