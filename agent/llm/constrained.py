"""Constrained decoding: the tool grammar (grammar.py) applied token by token with llguidance.

Why llguidance: it is maintained, MIT, needs no torch, and computes a token mask over
Qwen's 248k vocabulary in microseconds once a grammar state has been seen. It is fed
through mlx-lm's `logits_processors` hook, which calls `processor(tokens, logits)` before
each sampled token.

What costs what, and where it is paid:
- `llguidance.LLTokenizer` over the vocabulary: seconds, once per loaded model (`Guides`).
- Compiling the grammar of a tool set: milliseconds, once per (tool set, thinking) and kept
  beside the prefix cache: the tools change only on reload, like the prefix.
- Per token: reading the token just sampled, one mask computation (microseconds once a
  grammar state has been seen), one add of a 0/-inf bias over the logits. Reading the token
  waits for the step mlx-lm queued ahead; mlx-lm builds the next step's model graph before it
  calls the processors, so that work still overlaps the running step, and only the mask work
  sits between two steps (bench/constrained.py measures the whole cost).
- Inside a tool call only: the confidence floor, two log-sum-exps and a select over the
  logits, queued with the step (no extra wait), and one read of a value already computed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from typing import Any

from agent.llm.call_watch import CallTrace, CallWatch
from agent.llm.grammar import Style, style_for, tool_grammar, tool_name
from agent.llm.stream import Tags
from agent.config.settings import ConfigError

log = logging.getLogger(__name__)

GRAMMAR_CACHE_SIZE = 4
# The least share of the model's own probability (softmax of its logits) that the grammar's
# mask may leave it at one step inside a tool call before the call is abandoned instead of
# forced. Measured per step inside calls (tests/test_constraint_floor.py keeps it honest):
# - meant calls (tiny Qwen3.5 models trained to write them, greedy): every step >= 0.979,
#   median 0.998 (the mask only removes the model's noise);
# - forced calls on the real 248,320-wide vocabulary (a random-weight tiny Qwen3.5 made to
#   write one, 850 steps): each step is either open (a string, a name: ~0.998) or forced,
#   and every forced step is <= 3.2e-4 (median 1.8e-6: a handful of tokens out of 248k);
# - a trained model made to write what it did not mean (a wrong type, a parameter that does
#   not exist, a string over its cap): 1e-6 to 1e-4 at the step where it is overruled.
# 0.01 sits 30x above the worst forced step and 98x below the worst meant one; a real model
# that hesitates between two spellings of a meant call still leaves far more than 1 %.
CONFIDENCE_FLOOR = 0.01


class ConstraintError(ConfigError):
    """`model.constrained` cannot be honoured: llguidance is missing, or a tool's schema
    cannot be compiled. A config error, so the CLI shows it as one line, without a traceback."""


def require_llguidance() -> Any:
    """The llguidance module, or a ConstraintError that says how to get it."""
    try:
        import llguidance
        import llguidance.hf
    except ImportError as exc:
        raise ConstraintError(
            "constrained tool calls need the llguidance package (pip install 'llguidance>=1.9,<2'), "
            f"which cannot be imported: {exc}. Or set model.constrained: false."
        ) from exc
    return llguidance


class Guides:
    """The llguidance view of one model's vocabulary, and the grammars compiled for it."""

    def __init__(self, tokenizer: Any, *, style: Style, tags: Tags, vocab_width: int):
        self.tokenizer = tokenizer
        self.style = style
        self.tags = tags
        self.vocab_width = vocab_width
        self.setup_s = 0.0
        self.compiles = 0
        self.last_compile_s = 0.0
        self._ll: Any = None
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self.tag_tokens = self._single_token_tags()
        self.eos_ids = sorted(tokenizer.eos_token_ids)
        # What an abandoned call ends with: the end of the assistant's turn (Qwen's <|im_end|>).
        self.stop_token = getattr(tokenizer, "eos_token_id", None) or self.eos_ids[0]

    @classmethod
    def for_model(cls, tokenizer: Any, *, tags: Tags, vocab_width: int) -> "Guides | None":
        """Guides in the tool-call style of the model's mlx-lm parser; None (and a warning) for
        a style the grammar does not know: such a model still runs, unconstrained."""
        try:
            style = style_for(tokenizer.tool_parser.__module__)
        except ValueError as exc:
            log.warning("%s", exc)
            return None
        return cls(tokenizer, style=style, tags=tags, vocab_width=vocab_width)

    def _single_token_tags(self) -> dict[str, int]:
        found = {}
        for tag in {self.tags.tool_start, self.tags.tool_end, self.tags.think_start, self.tags.think_end}:
            ids = self.tokenizer.encode(tag, add_special_tokens=False)
            if len(ids) == 1:
                found[tag] = ids[0]
        return found

    def ll_tokenizer(self) -> Any:
        """The llguidance tokenizer (built on first use: seconds on a 248k vocabulary)."""
        if self._ll is None:
            llguidance = require_llguidance()
            start = time.perf_counter()
            # The mask must be as wide as the logits (248,320 for Qwen3.5, padded past the
            # 248,077 real tokens), not as long as the tokenizer.
            self._ll = llguidance.hf.from_tokenizer(self.tokenizer._tokenizer, n_vocab=self.vocab_width, eos_token=self.eos_ids)
            self.setup_s = time.perf_counter() - start
            log.info("llguidance tokenizer ready in %.1f s", self.setup_s)
        return self._ll

    def matcher(self, tools: list[dict], *, thinking: bool, require_call: bool = False) -> Any:
        """A fresh matcher for this tool set (compiled once, then copied)."""
        key = json.dumps([tools, thinking, require_call], sort_keys=True)
        pristine = self._grammars.get(key)
        if pristine is None:
            pristine = self._compile(tools, thinking=thinking, require_call=require_call)
            self._grammars[key] = pristine
            while len(self._grammars) > GRAMMAR_CACHE_SIZE:
                self._grammars.popitem(last=False)
        else:
            self._grammars.move_to_end(key)
        return pristine.deep_copy()

    def clear(self) -> None:
        """Forget the compiled grammars (benchmarks time a fresh compile with it)."""
        self._grammars.clear()

    def _compile(self, tools: list[dict], *, thinking: bool, require_call: bool) -> Any:
        llguidance = require_llguidance()
        ll = self.ll_tokenizer()
        start = time.perf_counter()
        grammar = tool_grammar(tools, style=self.style, tags=self.tags, tag_tokens=self.tag_tokens, thinking=thinking, require_call=require_call)
        matcher = llguidance.LLMatcher(ll, grammar, log_level=0)
        if matcher.is_error():
            raise ConstraintError(self._explain(tools, matcher.get_error()))
        self.compiles += 1
        self.last_compile_s = time.perf_counter() - start
        log.info("tool grammar for %d tools compiled in %.1f ms", len(tools), self.last_compile_s * 1000)
        return matcher

    def _explain(self, tools: list[dict], error: str) -> str:
        """Name the tool whose schema breaks the grammar (each compiled alone to find it)."""
        llguidance = require_llguidance()
        for tool in tools:
            alone = tool_grammar([tool], style=self.style, tags=self.tags, tag_tokens=self.tag_tokens)
            problem = llguidance.LLMatcher.validate_grammar(alone, self.ll_tokenizer())
            if problem:
                return f"the schema of tool {tool_name(tool)!r} cannot be compiled into a tool-call grammar: {problem.strip().splitlines()[0]}"
        return f"the tool-call grammar cannot be compiled: {error.strip()}"

    def processor(self, tools: list[dict] | None, *, thinking: bool, thinking_budget: int | None, constrained: bool,
                  require_call: bool = False, floor: float = CONFIDENCE_FLOOR) -> "Guide | None":
        """The logits processor for one model call, or None when there is nothing to do.
        `floor` 0 forces every call through (a random-weight model's calls, in benchmarks)."""
        budget = thinking_budget if thinking else None
        if not constrained and budget is None:
            return None
        matcher = self.matcher(tools or [], thinking=thinking, require_call=require_call) if constrained else None
        think_end = self.tag_tokens.get(self.tags.think_end)
        if budget is not None and think_end is None:
            log.warning("this model's %r is not one token; model.thinking_budget is ignored", self.tags.think_end)
            budget = None
        watch = CallWatch(
            start=self.tags.tool_start, end=self.tags.tool_end, start_id=self.tag_tokens.get(self.tags.tool_start),
            end_id=self.tag_tokens.get(self.tags.tool_end), style=self.style, token_bytes=self._token_bytes,
        )
        return Guide(matcher, width=self.vocab_width, thinking=thinking, budget=budget, think_end=think_end,
                     watch=watch, floor=floor, stop_token=self.stop_token)

    def _token_bytes(self, token: int) -> bytes:
        return self.ll_tokenizer().decode_bytes([token])


class Guide:
    """An mlx-lm logits processor: the grammar's mask, the confidence floor, the thinking budget.

    mlx-lm's first call passes the prompt tokens (of this call, after the prefix cache): they
    are not the model's writing and are never fed to the matcher. Each later call passes
    one more token, the one just sampled.

    The floor: inside a tool call, the mask is applied only while it leaves the model at least
    `floor` of its own probability (softmax of its logits at temperature 1). Below that the
    grammar would be choosing for the model, so the call is abandoned instead: the only token
    left is the end of the reply, the call stays unclosed, and `abandoned` tells the engine to
    finish with reason "constraint". The test of the floor is folded into the logits (an
    mx.where), so it costs no wait for the GPU: its outcome is read one step later, with the
    sampled token that depended on it.
    """

    def __init__(self, matcher: Any, *, width: int, thinking: bool, budget: int | None, think_end: int | None,
                 watch: CallWatch, floor: float = CONFIDENCE_FLOOR, stop_token: int = 0):
        import numpy as np

        self.matcher = matcher
        self.width = width
        self.thinking = thinking and think_end is not None
        self.budget = budget
        self.think_end = think_end
        self.watch = watch
        self.log_floor = math.log(floor) if floor > 0 else -math.inf
        self.stop_token = stop_token
        self.thought = 0  # tokens written inside <think> so far
        self.started = False
        self.failed = False
        self.abandoned = False
        self._words = np.full((1, (width + 31) // 32), -1, dtype=np.int32)
        self._last_words: bytes | None = None
        self._last_bias: Any = None
        self._allowed: Any = None  # the same mask as booleans (a quarter of the bytes), for the floor
        self._stop_only: Any = None
        self._pending: tuple[Any, Any] | None = None  # (log allowed mass, top token allowed) of the last step

    @property
    def traces(self) -> list[CallTrace]:
        """One per tool call the model started, in order."""
        return self.watch.traces

    def __call__(self, tokens: Any, logits: Any) -> Any:
        if not self.started:
            self.started = True  # the prompt: not the model's writing
        elif self.matcher is not None or self.thinking:
            # .item() waits for the token mlx-lm queued: the price of a mask that depends on it.
            self._accept(int(tokens[-1].item()))
        if self.thinking and self.budget is not None and self.thought >= self.budget and self._allows(self.think_end):
            return self._only(self.think_end, logits)
        if self.matcher is None or self.failed or self.abandoned:
            return logits
        return self._apply(logits)

    def _accept(self, token: int) -> None:
        if self.thinking:
            if token == self.think_end:
                self.thinking = False
            else:
                self.thought += 1
        if self.matcher is None or self.failed or self.abandoned:
            return
        self._settle()
        if self.abandoned:
            return  # the token is the forced stop, not the model's writing
        if not self.matcher.consume_token(token):
            # Cannot happen while the mask is applied; if it does, stop constraining rather
            # than sample from an all-forbidden distribution.
            self.failed = True
            log.warning("constrained decoding stopped: %s", self.matcher.get_error()[:200])
            return
        self.watch.accept(token)

    def _settle(self) -> None:
        """Read the last step's floor test and name check (evaluated with the sampled token)."""
        if self._pending is None:
            return
        log_mass, top_allowed = self._pending
        self._pending = None
        trace = self.watch.current
        if trace is None:
            return
        log_value = float(log_mass.item())
        trace.masses.append(math.exp(log_value))
        trace.lowest_mass = min(trace.lowest_mass, trace.masses[-1])
        if top_allowed is not None and not top_allowed.item():
            trace.name_overridden = True
        if log_value < self.log_floor:  # the same test the logits made: the token is the stop
            self.abandoned = trace.abandoned = True

    def finish(self) -> None:
        """Settle the last step (the generation ended before another token was accepted)."""
        if self.matcher is not None and not self.failed and not self.abandoned:
            self._settle()

    def _allows(self, token: int) -> bool:
        if self.matcher is None:
            return True
        self._fill()
        return bool((int(self._words[0, token // 32]) >> (token % 32)) & 1)

    def _fill(self) -> None:
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self._words)

    def _only(self, token: int, logits: Any) -> Any:
        import mlx.core as mx

        keep = mx.arange(logits.shape[-1]) == token
        return mx.where(keep, logits, -mx.inf)

    def _apply(self, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np

        self._fill()
        words = self._words.tobytes()
        if words != self._last_words:  # free text asks for the same mask token after token
            bits = np.unpackbits(self._words.view(np.uint8), bitorder="little")
            allowed = np.zeros(logits.shape[-1], dtype=bool)
            n = min(len(bits), len(allowed))
            allowed[:n] = bits[:n]
            # An added 0 / -inf bias: a quarter of the time of mx.where over 248k logits each
            # step. Made from the booleans by MLX, queued with the step: inside a call the mask
            # changes every token, and the CPU then copies a quarter of the bytes.
            self._allowed = mx.array(allowed)
            self._last_words, self._last_bias = words, mx.where(self._allowed, 0.0, -mx.inf).astype(logits.dtype)
        masked = logits + self._last_bias
        if not self.watch.in_call:
            return masked  # free text: nothing is forced, no floor
        # The model's own probability of what the mask allows: one pass of (approximate) exp,
        # then two sums. float32: bfloat16 sums of 248k terms drift.
        wide = logits.astype(mx.float32)
        weights = _rough_exp(wide - mx.max(wide, axis=-1, keepdims=True))
        log_mass = mx.log(mx.sum(mx.where(self._allowed, weights, 0.0), axis=-1)) - mx.log(mx.sum(weights, axis=-1))
        top_allowed = None
        if self.watch.naming:
            top_allowed = mx.take(self._allowed, mx.argmax(logits, axis=-1))
        self._pending = (log_mass, top_allowed)
        return mx.where(log_mass[..., None] < self.log_floor, self._stop_logits(logits), masked)

    def _stop_logits(self, logits: Any) -> Any:
        import mlx.core as mx

        if self._stop_only is None:
            keep = mx.arange(logits.shape[-1]) == self.stop_token
            self._stop_only = mx.where(keep, 0.0, -mx.inf).astype(logits.dtype)
        return self._stop_only


# exp(y) = 2^(y / ln 2): write y / ln 2 straight into a float32's exponent bits (Schraudolph,
# 1999), within 3 % of exp. MLX's CPU backend computes exact exps ~30x slower than numpy
# (3.3 ms for 248k), which made the floor a quarter of a step there; these four cheap
# elementwise ops cost a fifth of that, and 3 % is nothing against the floor's margins (30x).
_EXP_SCALE = 2**23 / math.log(2)
_EXP_OFFSET = 127 * 2**23 - 366393  # the exponent bias, less the shift that centres the error


def _rough_exp(y: Any) -> Any:
    """exp(y) for y <= 0, within 3 %; below -80 as at -80 (2e-35: nothing against a floor),
    where the exponent bits would otherwise underflow into garbage."""
    import mlx.core as mx

    return (mx.maximum(y, -80.0) * _EXP_SCALE + _EXP_OFFSET).astype(mx.int32).view(mx.float32)
