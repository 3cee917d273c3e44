"""A scripted stand-in for the MLX engine, for turn logic only.

The real MLX path is covered by tests that run tiny real models; this fake lets the turn's
guards be driven by exact model outputs. It uses mlx-lm's real Qwen3.5 tool-call parser.
"""

from __future__ import annotations

import asyncio

from mlx_lm.tool_parsers import qwen3_coder

from agent.llm.types import Chunk, Finished, ToolFormat
from agent.llm.stream import Tags


def xml_call(name: str, **arguments) -> str:
    """A Qwen3.5 tool call as the model writes it."""
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in arguments.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


class ScriptedLLM:
    """Replays one scripted output per model call, in small segments, and records requests."""

    name = "scripted"

    def __init__(self, outputs: list, *, segment: int = 3, delay_s: float = 0.0):
        self.outputs = list(outputs)
        self.segment = segment
        self.delay_s = delay_s
        self.requests = []
        self.tool_format = ToolFormat(tags=Tags(), parse=qwen3_coder.parse_tool_call)

    async def stream(self, request, cancel=None):
        self.requests.append(request)
        output = self.outputs.pop(0)
        finish = "stop"
        if isinstance(output, tuple):  # (text, finish_reason)
            output, finish = output
        sent = 0
        for start in range(0, len(output), self.segment):
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            sent += 1
            yield Chunk(output[start : start + self.segment])
        yield Finished(
            finish_reason=finish, prompt_tokens=10, generated_tokens=sent, tokens_per_s=100.0,
            time_to_first_token_s=0.01, prefix_hit=False, prefix_tokens_reused=0,
        )
