"""The MLX backend: loads a local model folder and streams generations from one thread.

One dedicated thread owns MLX (as in mlx-lm's server): loading, prefill and decoding all
happen there, so generation is serialised and the asyncio loop never blocks. Each model call
starts from a copy of the prefilled system-prompt + tool-schema cache (see prefix_cache.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from agent.llm.constrained import Guides, require_llguidance
from agent.llm.conversation_cache import MB, ConversationCache
from agent.llm.prefix_cache import PrefixCache
from agent.llm.stream import Tags
from agent.llm.types import Chunk, Finished, Picture, Request, Sampling, ToolFormat, pictures_in
from agent.llm.vision import VisionModel, VisionUnavailable, has_vision_tower, vision_extra_missing, with_image_parts
from agent.llm.warmup import WarmUp


class ModelLoadError(RuntimeError):
    """A model folder exists but cannot be loaded."""


class MLXEngine:
    """A loaded MLX model; `stream()` is safe to call from the asyncio loop."""

    def __init__(self, path: Path, *, prefill_step_size: int = 2048, seed: int | None = None,
                 prefix_store: Any = None, conversation_budget_bytes: int = 512 * MB):
        self.path = Path(path)
        self.warmup = WarmUp()  # loading -> prefix (N of M tokens) -> ready, for status and waiting turns
        self._prefix_store = prefix_store  # a PrefixStore: the prefix survives restarts
        self.name = self.path.name
        self.prefill_step_size = prefill_step_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")
        self._closing = threading.Event()  # set by close(): background warm-up gives up
        self._seed = seed
        self.model: Any = None
        self.tokenizer: Any = None
        self.vision: VisionModel | None = None  # set when the checkpoint and the vision extra allow images
        self.prefix_cache: PrefixCache | None = None
        self.conversations: ConversationCache | None = None
        self._turn_start_id: int | None = None  # found on first use (see _message_boundary)
        self._conversation_budget = conversation_budget_bytes
        self._executor.submit(self._load).result()
        self.warmup.finish("")  # usable now; warm_up() makes the first call quick
        self.tool_format = self._tool_format()
        # Cheap: the vocabulary is read, and grammars compiled, on first constrained use.
        self._guides = Guides.for_model(self.tokenizer, tags=self.tool_format.tags, vocab_width=_logits_width(self.model, self.tokenizer))

    def _load(self) -> None:
        import mlx.core as mx
        from mlx_lm import load

        if self._seed is not None:
            mx.random.seed(self._seed)
        try:
            # With a vision tower and the extra: mlx-lm's arrays load lazily and are never
            # read, since mlx-vlm's language model replaces them (one set of weights).
            sees = has_vision_tower(self.path) and vision_extra_missing() is None
            self.model, self.tokenizer = load(str(self.path), lazy=sees)
            if sees:
                self.vision = VisionModel.load(self.path)
                self.vision.share_into(self.model)
        except Exception as exc:  # mlx-lm raises many kinds; the user needs one message
            raise ModelLoadError(
                f"cannot load the MLX model in {self.path}: {exc}. "
                "Check that the folder is a complete MLX model (config.json, *.safetensors, "
                "tokenizer files), or pull one with `agentd model pull qwen3.5-4b`."
            ) from exc
        self.prefix_cache = PrefixCache(self.model, step_size=self.prefill_step_size)
        self.conversations = ConversationCache(self.model, budget_bytes=self._conversation_budget,
                                               step_size=self.prefill_step_size)

    def _tool_format(self) -> ToolFormat:
        tok = self.tokenizer
        if tok.tool_parser is None or not tok.has_tool_calling:
            raise ModelLoadError(
                f"the model in {self.path} has no tool-calling chat template that mlx-lm "
                "recognises; agentd needs one (Qwen3.5 or a Hermes-style template)"
            )
        tags = Tags(
            tool_start=tok.tool_call_start,
            tool_end=tok.tool_call_end,
            think_start=tok.think_start or "<think>",
            think_end=tok.think_end or "</think>",
        )
        return ToolFormat(tags=tags, parse=tok.tool_parser)

    def render(self, messages: list[dict], tools: list[dict] | None, *, thinking: bool, generation_prompt: bool = True) -> str:
        """The prompt text the chat template makes of these messages."""
        return self.tokenizer.apply_chat_template(
            with_image_parts(messages),
            tools=tools or None,
            tokenize=False,
            add_generation_prompt=generation_prompt,
            enable_thinking=thinking,
        )

    def prefix_text(self, system_prompt: str, tools: list[dict] | None, *, thinking: bool = False) -> str:
        """The fixed head of every prompt: the system turn with the tools, up to the user's words.

        Templates may refuse to render a system message alone (Qwen3.5's raises "No user
        query found"), so render one with a placeholder user message and cut before it.
        """
        marker = "\u2063agentd-user-text\u2063"
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": marker}]
        text = self.render(messages, tools, thinking=thinking)
        return text[: text.index(marker)]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    async def stream(self, request: Request, cancel: threading.Event | None = None) -> AsyncIterator[Chunk | Finished]:
        """Generate on the MLX thread; yield text chunks, then one Finished."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = cancel or threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._generate, request, cancel, put)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                yield item
            await future  # re-raises an exception from the MLX thread
        finally:
            cancel.set()  # the consumer stopped early: let the MLX thread finish its token

    def _generate(self, request: Request, cancel: threading.Event, put: Callable[[Any], None]) -> None:
        try:
            for item in self.generate_sync(request, cancel):
                put(item)
        finally:
            put(None)

    def generate_sync(self, request: Request, cancel: threading.Event | None = None):
        """The generation itself; runs on the MLX thread (benchmarks call it directly there)."""
        from mlx_lm import stream_generate

        pictures = pictures_in(request.messages)
        if pictures:
            yield from self._generate_with_pictures(request, pictures, cancel)
            return
        system, _ = _split_system(request.messages)
        use_prefix = bool(system) and request.prefix_cache
        prefix_text = self.prefix_text(system[0]["content"], request.tools, thinking=request.thinking) if use_prefix else ""
        full_text = self.render(request.messages, request.tools, thinking=request.thinking)
        tokens = self.encode(full_text)
        start = time.perf_counter()
        # The conversation's own snapshot when it is a head of this prompt, else the prefix.
        found = self.conversations.fetch(request.conversation, tokens) if request.prefix_cache else None
        if found is not None:
            (cache, held), hit = found, True
        else:
            cache, held, hit = self.prefix_cache.fetch(self, prefix_text, full_text, tokens)
        reused = held if hit else 0  # a prefix built just now was prefilled by this call
        if request.prefix_cache and request.conversation:  # read the prompt now, keeping a snapshot for its next call
            held = self.conversations.read_and_keep(request.conversation, cache, tokens, held, self._message_boundary(tokens),
                                                    continues_turn=request.messages[-1].get("role") == "tool")

        sampler, processors, guide = self._sampling(request)
        tally = _Tally(start)
        generated: list[int] = []  # every token stream_generate returns has been fed to the cache
        steps = stream_generate(
            self.model,
            self.tokenizer,
            tokens[held:],
            max_tokens=request.max_tokens,
            sampler=sampler,
            logits_processors=processors or None,
            prompt_cache=cache,
            prefill_step_size=self.prefill_step_size,
        )
        yield from _relay(steps, cancel, tally, lambda response: generated.append(response.token))
        if request.prefix_cache and request.conversation:
            self.conversations.keep_reply(request.conversation, cache, tokens + generated)
        yield _finished(guide, tally, prompt_tokens=len(tokens), hit=hit, reused=reused)

    def _sampling(self, request: Request) -> tuple[Any, list, Any]:
        """(sampler, logits processors, the constraint guide or None) for this request."""
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        s = request.sampling
        sampler = make_sampler(temp=s.temperature, top_p=s.top_p, min_p=s.min_p, top_k=s.top_k)
        processors = list(request.logits_processors)
        guide = self._guides.processor(
            request.tools, thinking=request.thinking, thinking_budget=request.thinking_budget, constrained=request.constrained
        ) if self._guides and (request.constrained or request.thinking_budget) else None
        if guide is not None:
            processors.insert(0, guide)
        if s.presence_penalty:
            processors += make_logits_processors(presence_penalty=s.presence_penalty)
        return sampler, processors, guide

    def _generate_with_pictures(self, request: Request, pictures: list[Picture], cancel: threading.Event | None):
        """An image call through mlx-vlm from an empty cache; the prefix and conversation
        caches are neither read nor written (an image cache cannot go back to mlx-lm)."""
        if self.vision is None:
            raise VisionUnavailable(self.cannot_see())
        prompt = self.render(request.messages, request.tools, thinking=request.thinking)
        sampler, processors, guide = self._sampling(request)
        tally, prompt_tokens = _Tally(time.perf_counter()), [0]
        steps = self.vision.generate(prompt, pictures, max_tokens=request.max_tokens, sampler=sampler,
                                     logits_processors=processors or None, prefill_step_size=self.prefill_step_size)
        yield from _relay(steps, cancel, tally, lambda step: prompt_tokens.__setitem__(0, step.prompt_tokens))
        yield _finished(guide, tally, prompt_tokens=prompt_tokens[0], hit=False, reused=0)

    def cannot_see(self) -> str | None:
        """None when this engine takes images; else why not, and what to do."""
        if self.vision is not None:
            return None
        if not has_vision_tower(self.path):
            return (f"the model {self.name} has no vision weights; use a Qwen3.5 checkpoint with its vision "
                    "tower (the mlx-community Qwen3.5 folders have one)")
        return vision_extra_missing() or f"the vision model of {self.name} did not load"

    async def ask_about_image(self, image: bytes, question: str, *, max_pixels: int, max_bytes: int,
                              max_tokens: int = 256) -> str:
        """The model's answer about one picture, outside any conversation (ToolContext.vision).
        Runs on the MLX thread like any call: a tool runs between the turn's model calls,
        so the thread is free and this does not wait on the turn that asked."""
        from agent.images import picture_from_bytes

        picture = picture_from_bytes(image, "the picture", max_pixels=max_pixels, max_bytes=max_bytes)
        request = Request(messages=[{"role": "user", "content": question, "images": [picture]}], tools=[],
                          thinking=False, max_tokens=max_tokens, sampling=Sampling(temperature=0.0, presence_penalty=0.0),
                          prefix_cache=False)
        parts = [item.text async for item in self.stream(request) if isinstance(item, Chunk)]
        return _without_thinking("".join(parts))

    def _message_boundary(self, tokens: list[int]) -> int | None:
        """Where the last message ends in `tokens`: at the last turn-start token, which opens
        the generation prompt (found in the tokens, not by rendering the history again). None
        when the turn start is not one token in this vocabulary."""
        if self._turn_start_id is None:
            ids = self.tokenizer.encode(self.prefix_cache.turn_start, add_special_tokens=False)
            self._turn_start_id = ids[0] if len(ids) == 1 else -1
        if self._turn_start_id < 0 or self._turn_start_id not in tokens:
            return None
        return len(tokens) - 1 - tokens[::-1].index(self._turn_start_id)

    def status(self) -> dict:
        """This engine's part of `agentd status`: its prompt caches."""
        stats = self.prefix_cache.stats
        return {"backend": "mlx",
                "prefix_cache": {"hits": stats.hits, "misses": stats.misses, "builds": stats.builds, "loads": stats.loads,
                                 "tokens_reused": stats.tokens_reused},
                "conversation_cache": self.conversations.report()}

    def forget_prompts(self) -> None:
        """Drop the prefix and the conversations' snapshots (the instructions or tools changed:
        every snapshot begins with the old prefix)."""
        self.prefix_cache.clear()
        self.conversations.forget()

    def guides(self) -> Guides | None:
        """Constrained decoding for this model; None when its tool-call format is not known."""
        return self._guides

    def warm_up(self, system_prompt: str, tools: list[dict], *, constrained: bool = False) -> Future:
        """Prefill the prefix now (daemon start), so the first command does not pay for it;
        with `constrained`, also read the vocabulary and compile the tools' grammar. The
        future is done when the model is warm."""
        constrained = constrained and self._guides is not None
        if constrained:
            require_llguidance()  # missing: say so now, not at the first command

        tokens = self.encode(self.prefix_text(system_prompt, tools))
        self.warmup.enter("prefix", len(tokens))  # now, so a turn sent next already waits

        def build() -> None:
            try:
                source = self.prefix_cache.prime(tokens, stop=self._closing, store=self._prefix_store,
                                                 template=str(self.tokenizer.chat_template), progress=self.warmup.advance)
                if constrained:
                    self._guides.matcher(tools, thinking=False)
            except BaseException:
                logging.getLogger(__name__).exception("the model's warm-up failed")
                self.warmup.enter("stopped")  # waiting turns go ahead (and meet the error themselves)
                raise
            if source == "stopped":
                self.warmup.enter("stopped")
            else:
                self.warmup.finish({"loaded": "prefix loaded from the home folder"}.get(source, f"prefix {source}"))

        return self._executor.submit(build)

    def run_on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the MLX thread and wait (for benchmarks and tests)."""
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        """Release the MLX thread; its streams are destroyed on it first, or the process
        aborts at exit ("terminate called without an active exception", mlx#3126)."""
        import mlx.core as mx

        self._closing.set()
        self._executor.submit(mx.clear_streams).result()
        self._executor.shutdown(wait=True)


@dataclass
class _Tally:
    """What a generation's steps added up to, for its Finished."""

    start: float
    first: float | None = None
    count: int = 0
    tps: float = 0.0
    reason: str = "stop"


def _relay(steps: Iterator[Any], cancel: threading.Event | None, tally: _Tally,
           each: Callable[[Any], None]) -> Iterator[Chunk]:
    """Text chunks from mlx-lm's (or mlx-vlm's) generation steps, counted in `tally`; `each`
    sees every step; a set `cancel` stops after the current token."""
    for step in steps:
        if tally.first is None:
            tally.first = time.perf_counter() - tally.start
        tally.count, tally.tps = step.generation_tokens, step.generation_tps
        each(step)
        if step.text:
            yield Chunk(step.text)
        if step.finish_reason:
            tally.reason = step.finish_reason
        if cancel is not None and cancel.is_set():
            tally.reason = "cancelled"
            break


def _finished(guide: Any, tally: _Tally, *, prompt_tokens: int, hit: bool, reused: int) -> Finished:
    reason = tally.reason
    if guide is not None:
        guide.finish()
        if guide.abandoned and reason != "cancelled":
            reason = "constraint"
    return Finished(finish_reason=reason, prompt_tokens=prompt_tokens, generated_tokens=tally.count,
                    tokens_per_s=tally.tps, time_to_first_token_s=tally.first or 0.0, prefix_hit=hit,
                    prefix_tokens_reused=reused, call_traces=tuple(guide.traces) if guide is not None else ())


def _without_thinking(text: str) -> str:
    """The answer after any <think>...</think> block."""
    return text.rsplit("</think>", 1)[-1].strip()


def _logits_width(model: Any, tokenizer: Any) -> int:
    """How many logits the model outputs (Qwen3.5 pads its 248,077 tokens to 248,320)."""
    args = getattr(model, "args", None)
    width = getattr(args, "vocab_size", None) or (getattr(args, "text_config", None) or {}).get("vocab_size")
    return int(width or len(tokenizer._tokenizer))


def _split_system(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    if messages and messages[0].get("role") == "system":
        return messages[:1], messages[1:]
    return [], messages

