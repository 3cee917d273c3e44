"""Image calls for the MLX engine: mlx-vlm's Qwen3.5 on the same weights as the text model.

A Qwen3.5 checkpoint carries a vision tower next to its language model. mlx-lm loads the
language model and drops the tower; mlx-vlm loads both. The engine keeps mlx-lm for text
turns (prefix cache, conversation cache, grammar) and hands mlx-lm's model the very arrays
of mlx-vlm's language model, so one copy of the weights serves both.

A call with pictures goes through mlx-vlm from an empty cache: its cache holds mRoPE offsets
that only mlx-vlm's model knows, so it never reaches the prefix or conversation caches.
Everything here runs on the engine's MLX thread. mlx-vlm is the optional `vision` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from agent.llm.types import Picture

VISION_EXTRA_HINT = "install the vision extra: pip install 'agentd[vision]'"


class VisionUnavailable(RuntimeError):
    """This engine cannot look at images (no vision extra, no vision tower, or a remote model)."""


def has_vision_tower(path: Path) -> bool:
    """Whether the checkpoint in `path` has vision weights (its config.json says so)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config.get("vision_config"), dict)


def vision_extra_missing() -> str | None:
    """None when mlx-vlm (and Pillow) import; else the one line that says how to add them."""
    try:
        import mlx_vlm  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as exc:
        return f"images need mlx-vlm, which is not installed ({exc.name}): {VISION_EXTRA_HINT}"
    return None


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 while mlx-vlm loads: a processor file missing from the folder makes
    transformers ask the Hugging Face hub, and agentd never goes online by itself."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


@dataclass
class VisionStep:
    """One step of an image call, shaped like mlx-lm's GenerationResponse for the engine."""

    text: str
    generation_tokens: int
    generation_tps: float
    prompt_tokens: int
    finish_reason: str | None


class VisionModel:
    """mlx-vlm's model and processor for one checkpoint; `share_into` gives its language
    model's arrays to the mlx-lm model, so text and image calls use one set of weights."""

    def __init__(self, model: Any, processor: Any):
        self.model = model
        self.processor = processor

    @classmethod
    def load(cls, path: Path) -> "VisionModel":
        from mlx_vlm import load

        with offline_hub():
            model, processor = load(str(path))
        return cls(model, processor)

    def share_into(self, text_model: Any) -> None:
        """Replace the mlx-lm model's language-model parameters by this model's (same tree:
        `language_model.model.*`, `language_model.lm_head`), so no array is held twice."""
        from mlx.utils import tree_flatten, tree_unflatten

        # Flattened and rebuilt: mlx-vlm's tree has parameter-less modules (rotary_emb) that
        # mlx-lm's lacks, and `update` refuses names it does not have.
        shared = tree_unflatten(tree_flatten(self.model.language_model.parameters()))
        text_model.language_model.update(shared)

    def images(self, pictures: list[Picture]) -> list[Any]:
        """PIL images for mlx-vlm (the Qwen processor takes PIL images or paths, not bytes)."""
        from io import BytesIO

        from PIL import Image

        return [Image.open(BytesIO(p.data)).convert("RGB") for p in pictures]

    def generate(self, prompt: str, pictures: list[Picture], *, max_tokens: int, sampler: Any,
                 logits_processors: list | None, prefill_step_size: int) -> Iterator[VisionStep]:
        """Stream a generation for a rendered prompt whose <|image_pad|> marks are `pictures`."""
        from mlx_vlm import stream_generate

        processors = [self._spellable_only(), *(logits_processors or ())]
        for response in stream_generate(self.model, self.processor, prompt, image=self.images(pictures),
                                        max_tokens=max_tokens, sampler=sampler, logits_processors=processors,
                                        prefill_step_size=prefill_step_size):
            yield VisionStep(text=response.text, generation_tokens=response.generation_tokens,
                             generation_tps=response.generation_tps, prompt_tokens=response.prompt_tokens,
                             finish_reason=response.finish_reason)

    def _spellable_only(self) -> Any:
        """A logits processor that rules out the ids past the tokenizer's end: Qwen3.5's
        embedding is padded (248,320 rows for ~248,077 tokens) and mlx-vlm's detokenizer
        raises IndexError on a padded id, which an untrained or damaged model can pick."""
        import mlx.core as mx

        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        spellable = len(tokenizer)
        bias: list[Any] = []

        def processor(tokens: Any, logits: Any) -> Any:
            if logits.shape[-1] <= spellable:
                return logits
            if not bias:
                bias.append(mx.where(mx.arange(logits.shape[-1]) < spellable, 0.0, -mx.inf).astype(logits.dtype))
            return logits + bias[0]

        return processor

    def encode_images(self, prompt: str, pictures: list[Picture]) -> tuple[int, float]:
        """(image tokens, seconds) to turn the pictures into the model's input embeddings: the
        processor and the vision tower, without the language model (for `agentd bench`)."""
        import mlx.core as mx
        from mlx_vlm.utils import prepare_inputs

        start = time.perf_counter()
        inputs = prepare_inputs(self.processor, images=self.images(pictures), prompts=prompt,
                                image_token_index=self.model.config.image_token_index)
        grid = inputs["image_grid_thw"]
        features = self.model.get_input_embeddings(inputs["input_ids"], inputs["pixel_values"], image_grid_thw=grid)
        mx.eval(features.inputs_embeds)
        merge = self.model.config.vision_config.spatial_merge_size
        return int(mx.prod(grid, axis=-1).sum().item()) // merge**2, time.perf_counter() - start


def with_image_parts(messages: list[dict]) -> list[dict]:
    """The messages as the chat template wants them: a message with pictures gets content
    parts, one {"type": "image"} per picture before its text (the template writes
    <|vision_start|><|image_pad|><|vision_end|> for each)."""
    shaped = []
    for message in messages:
        pictures = message.get("images") or ()
        rest = {k: v for k, v in message.items() if k != "images"}
        if pictures:
            rest["content"] = [*({"type": "image"} for _ in pictures), {"type": "text", "text": message.get("content") or ""}]
        shaped.append(rest)
    return shaped
