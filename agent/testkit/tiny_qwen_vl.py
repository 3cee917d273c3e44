"""A tiny Qwen3.5 vision-language model folder, built offline in seconds (needs the vision extra).

The text half is `tiny_qwen.build_tiny_qwen35`'s (the real Qwen3.5 vocabulary, 2 layers with
one full-attention layer); a random Qwen3-VL vision tower (depth 2, hidden 32, patches of 16
merged 2x2) is added next to it, with the processor files mlx-vlm reads. The folder loads
with `mlx_vlm.load` (text and vision) and with `mlx_lm.load` (which drops the vision tower),
like a real Qwen3.5 checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

from agent.testkit.tiny_qwen import (
    QWEN35_VOCAB_SIZE,
    _added_token_ids,
    _write_json,
    model_config,
    qwen_tokenizer_json,
    tokenizer_config,
)

PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
TEXT_HIDDEN = 64
# Qwen3.5's own processor bounds: a side of at least 64 pixels, at most 16M pixels
# (agentd shrinks images to vision.max_pixels before they get here).
MIN_PIXELS = 65536
MAX_PIXELS = 16777216


def fixture_key() -> str:
    """What the cached folder depends on beyond tiny_qwen's own code: this file and mlx-vlm."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"mlx-vlm=={version('mlx-vlm')}".encode())
    return digest.hexdigest()[:16]


def build_tiny_qwen35_vl(dest: Path, *, seed: int = 0) -> Path:
    """Write a random tiny Qwen3.5 VL model folder to `dest` and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer_json = qwen_tokenizer_json()
    ids = _added_token_ids(tokenizer_json)
    config = vl_config(ids)
    _write_json(dest / "config.json", config)
    _write_json(
        dest / "generation_config.json",
        {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"]},
    )
    (dest / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    tok_config = tokenizer_config(tokenizer_json)
    tok_config["processor_class"] = "Qwen3VLProcessor"
    _write_json(dest / "tokenizer_config.json", tok_config)
    processor = {
        "processor_class": "Qwen3VLProcessor",
        "image_processor_type": "Qwen2VLImageProcessorFast",
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }
    _write_json(dest / "preprocessor_config.json", processor)
    # Present so that mlx-vlm never asks the hub for it.
    _write_json(dest / "video_preprocessor_config.json", {**processor, "video_processor_type": "Qwen3VLVideoProcessor"})
    (dest / "chat_template.jinja").write_text(tok_config["chat_template"], encoding="utf-8")
    _write_random_weights(dest, config, seed=seed)
    return dest


def vl_config(ids: dict[str, int]) -> dict:
    """config.json: tiny_qwen's text model plus a vision tower and the vision token ids."""
    config = model_config(
        vocab_size=QWEN35_VOCAB_SIZE,
        eos_id=ids["<|im_end|>"],
        pad_id=ids["<|endoftext|>"],
        num_layers=2,
        full_attention_interval=2,
        hidden_size=TEXT_HIDDEN,
    )
    config["vision_config"] = {
        "model_type": "qwen3_5",
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": TEXT_HIDDEN,
        "num_heads": 2,
        "patch_size": PATCH_SIZE,
        "spatial_patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "in_channels": 3,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [],
    }
    # mlx-vlm's defaults for these are not this vocabulary's ids.
    config["image_token_id"] = ids["<|image_pad|>"]
    config["video_token_id"] = ids["<|video_pad|>"]
    config["vision_start_token_id"] = ids["<|vision_start|>"]
    config["vision_end_token_id"] = ids["<|vision_end|>"]
    config["vocab_size"] = QWEN35_VOCAB_SIZE
    return config


def _write_random_weights(dest: Path, config: dict, *, seed: int) -> None:
    """Initialise mlx-vlm's Qwen3.5 model from `seed` and save it in mlx-lm's layout."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_vlm.models import qwen3_5

    mx.random.seed(seed)
    model = qwen3_5.Model(qwen3_5.ModelConfig.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    # Keys "language_model.model..." and "vision_tower...": both loaders' sanitize passes
    # them through unchanged (no norm offset: the norms are already plain multipliers).
    mx.save_safetensors(str(dest / "model.safetensors"), weights, metadata={"format": "mlx"})
    index = {"metadata": {"total_size": sum(v.nbytes for v in weights.values())},
             "weight_map": {k: "model.safetensors" for k in sorted(weights)}}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
