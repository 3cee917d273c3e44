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
from typing import Any, AsyncIterator

from agent.context import fit_turn
from agent.events import Note, ReplyDone, StepEvent, TextDelta, ThinkingDelta, ToolFinished, TurnStats
from agent.actions import Action, Approve, Executor
from agent.llm.stream import StreamSplitter
from agent.llm.types import LLM, Finished, Picture, Request, Sampling
from agent.tool_calls import ToolCall, parse_call
from agent.tools import SystemClock, ToolContext, ToolRegistry

log = logging.getLogger(__name__)

Confirm = Approve  # a door's answer to "may this confirm-tier tool run?"


@dataclass(frozen=True)
class TurnLimits:
    max_model_calls: int = 8
    max_repeated_calls: int = 3
    timeout_s: float = 120.0
    tool_output_max_chars: int = 4000
    tool_timeout_s: float = 30.0
    history_messages: int = 20
    max_tokens: int = 1024


@dataclass
class _Progress:
    """What a turn has done so far (for guards and the final stats)."""

    stats: dict = field(default_factory=lambda: {"prompt_tokens": 0, "generated_tokens": 0, "model_calls": 0, "coerced_calls": 0})
    first_token_s: float | None = None
    prefix_hit: bool = False
    prefix_reused: int = 0
    per_call: list = field(default_factory=list)  # (prefilled, reused) tokens of each model call
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
        # The daemon's services for the tools (agent.daemon sets them; None: not running here).
        self.home_control: Any = None
        self.schedule: Any = None
        # `await vision(image_bytes, question) -> str` for tools (ToolContext.vision); None when
        # the engine cannot see (agent.daemon.assembly.vision_hook).
        self.vision: Any = None
        self._memory: dict[str, list[dict]] = {}  # conversations when there is no store

    def executor(self) -> Executor:
        """The executor for this agent's tools, store and limits (built per use: a reload or
        the eval may swap the registry or the store between turns)."""
        return Executor(self.registry, store=self.store, settings=self.settings, clock=self.clock,
                        timeout_s=self.limits.tool_timeout_s, output_max_chars=self.limits.tool_output_max_chars,
                        home_control=self.home_control, schedule=self.schedule, vision=self.vision)

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
        images: list[Picture] | None = None,
    ) -> AsyncIterator[StepEvent]:
        """Run one turn for the user's text (and pictures, agent.images); yield step events,
        ending with ReplyDone."""
        if images and (why := self.cannot_see()):
            note = f"Cannot look at the image: {why}."
            yield Note(text=note)
            yield ReplyDone(text=note, stopped_by="error", reason="vision")
            return
        if conversation_id is None or not self._known(conversation_id):
            conversation_id = self._new_conversation(who)
        ctx = ToolContext(store=self.store, settings=self.settings, clock=self.clock, who=who, conversation_id=conversation_id,
                          home_control=self.home_control, schedule=self.schedule, vision=self.vision)
        # A picture is for the model: the phrase path would answer without looking at it.
        match = self.intents.match(text) if self.intents is not None and not images else None
        if explain:
            why = self.intents.explain(text) if self.intents is not None else "model: the phrase path is off"
            yield Note(text=why, level="info")
        if match is not None:
            from agent.skills.intents import answer_intent

            async for event in answer_intent(match, self.executor(), ctx, confirm, save=lambda m: self._save(conversation_id, m), cancel=cancel):
                yield event
            return
        history = self._history(conversation_id)
        # The history keeps "[image 640x480]", not the bytes; only this turn's calls see the picture.
        shown = " ".join([*(p.placeholder for p in images or ()), text]).strip()
        self._save(conversation_id, {"role": "user", "content": shown})
        user = {"role": "user", "content": text, **({"images": list(images)} if images else {})}
        messages = [{"role": "system", "content": self.system_prompt()}, *history, user]
        run = TurnRun(self, ctx, thinking=self.thinking if thinking is None else thinking, confirm=confirm, cancel=cancel)
        async for event in run.run(messages):
            yield event

    def cannot_see(self) -> str | None:
        """None when the model takes images; else why not (engines without `cannot_see`, such
        as the remote backend, take none)."""
        check = getattr(self.llm, "cannot_see", None)
        return check() if check is not None else f"the model backend {self.llm.name} does not take images"

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
        stopped_by, reason = "guard", "max_model_calls"
        note = f"Stopped after {self.limits.max_model_calls} model calls without a final answer."
        try:
            for _ in range(self.limits.max_model_calls):
                text, calls, finish = "", [], None
                async for event in self._model_call(messages):
                    if isinstance(event, ToolCallResult):
                        text, calls, finish = event.text, event.calls, event.finish
                    else:
                        yield event
                if finish == "cancelled":
                    stopped_by, reason, note = "cancelled", "", None
                    break
                if not calls:
                    self._save({"role": "assistant", "content": text})
                    stopped_by, reason, note = "done", "", None
                    if finish == "length":
                        reason = "max_tokens"
                        note = f"The reply was cut off at model.max_tokens ({self.limits.max_tokens} tokens)."
                    break
                guard = None
                async for event in self._run_calls(messages, text, calls):
                    if isinstance(event, _Stop):
                        guard = event
                    else:
                        yield event
                if guard:
                    stopped_by, reason, note = guard.stopped_by, guard.reason, guard.note
                    break
                if self.cancel.is_set():
                    stopped_by, reason, note = "cancelled", "", None
                    break
        except TimeoutError:
            stopped_by, reason = "guard", "turn_timeout"
            note = f"Stopped: the turn took longer than {self.limits.timeout_s:g} s."
        except ConnectionError as exc:  # a remote engine gone (agent.llm.remote_engine.EngineUnavailable)
            stopped_by, reason = "error", "engine"
            note = f"Stopped: {exc}."
        if note:
            yield Note(text=note)
        reply = "".join(self.p.reply).strip()
        if stopped_by != "done":
            reply = reply or (note or "")
            self._save({"role": "assistant", "content": reply})
        yield ReplyDone(text=reply, stopped_by=stopped_by, reason=reason, stats=self._stats())

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
            conversation=self.ctx.conversation_id,
        )
        stop_thread = threading.Event()
        text, raw_calls, finish, traces = [], [], None, ()
        self.p.stats["model_calls"] += 1
        stream = self.agent.llm.stream(request, stop_thread)
        try:
            while True:
                item = await self._next(stream)
                if item is None:
                    break
                if isinstance(item, Finished):
                    finish, traces = item.finish_reason, item.call_traces
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
        for call, trace in zip(calls, traces):  # one trace per call the guide saw start
            call.coerced = trace.coerced
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
        """Run the calls of one model message through the executor (or explain what was wrong)."""
        executor = self.agent.executor()
        actions = [self._action(call) for call in calls]
        problems = [executor.check(action)[2] for action in actions]
        if any(problems) and self.p.corrections_left <= 0:
            for action, problem in zip(actions, problems):  # every attempt leaves its audit row
                if problem:
                    await executor.run(action)
                else:
                    executor.refuse(action, "cancelled", "another call in the same message was still invalid")
            yield _Stop("guard", "invalid_call", "Stopped: the model's tool call was still invalid after one correction: " + next(p for p in problems if p))
            return
        if any(problems):
            self.p.corrections_left -= 1
        self._append(messages, self._assistant_message(text, calls, problems))
        for call, action, problem in zip(calls, actions, problems):
            if problem:
                outcome = await executor.run(action)
                yield Note(text=f"The model made an invalid tool call ({problem}); it gets one chance to correct it.")
                self._append(messages, {"role": "tool", "content": outcome.result, "tool_call_id": call.call_id})
                continue
            key = f"{call.name}:{json.dumps(call.arguments, sort_keys=True, default=str)}"
            self.p.seen_calls[key] = self.p.seen_calls.get(key, 0) + 1
            if self.p.seen_calls[key] >= self.limits.max_repeated_calls:
                repeated = f"the model called {call.name} with the same arguments {self.limits.max_repeated_calls} times"
                executor.refuse(action, "invalid", repeated)
                yield _Stop("guard", "repeated_call", f"Stopped: {repeated}.")
                return
            self.p.stats["coerced_calls"] += call.coerced
            result = ""
            remaining = self.deadline - time.monotonic()
            async for event in executor.steps(action, approve=self.confirm, cancel=self.cancel, timeout_s=remaining):
                if isinstance(event, ToolFinished):
                    result = event.result
                yield event
            self._append(messages, {"role": "tool", "content": result, "name": call.name, "tool_call_id": call.call_id})

    def _action(self, call: ToolCall) -> Action:
        return Action(tool=call.name, arguments=call.arguments, who=self.ctx.who, conversation_id=self.ctx.conversation_id,
                      call_id=call.call_id, source="model", problem=call.error)

    def _assistant_message(self, text: str, calls: list[ToolCall], problems: list[str | None]) -> dict:
        """The model's message for the history: valid calls as tool_calls, broken ones as the text it wrote."""
        assistant: dict = {"role": "assistant", "content": text}
        good = [c for c, problem in zip(calls, problems) if not problem]
        if good:
            assistant["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in good
            ]
        bad_raw = [c.raw for c, problem in zip(calls, problems) if problem and not c.name]
        if bad_raw:
            tags = self.agent.llm.tool_format.tags
            assistant["content"] = "\n".join([text, *(f"{tags.tool_start}{raw}{tags.tool_end}" for raw in bad_raw)]).strip()
        return assistant

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
        self.p.per_call.append((f.prompt_tokens - f.prefix_tokens_reused, f.prefix_tokens_reused))
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
            coerced_calls=p.stats["coerced_calls"],
            per_call=tuple(p.per_call),
        )


@dataclass
class ToolCallResult:
    text: str
    calls: list
    finish: str | None


@dataclass
class _Stop:
    stopped_by: str
    reason: str
    note: str
