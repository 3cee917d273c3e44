"""The stream splitter: markup never reaches the user, whatever the segment boundaries."""

from hypothesis import given, strategies as st

from agent.llm.stream import StreamSplitter

CALL = "<tool_call>\n<function=get_time>\n</function>\n</tool_call>"


def split(text: str, cuts: list[int], thinking: bool = False) -> list[tuple[str, str]]:
    splitter = StreamSplitter(thinking=thinking)
    pieces, last = [], 0
    for cut in sorted(set(cuts)) + [len(text)]:
        pieces += splitter.feed(text[last:cut])
        last = cut
    pieces += splitter.finish()
    merged: list[tuple[str, str]] = []
    for p in pieces:
        if merged and merged[-1][0] == p.kind and p.kind in ("text", "thinking"):
            merged[-1] = (p.kind, merged[-1][1] + p.text)
        else:
            merged.append((p.kind, p.text))
    return merged


def test_text_and_tool_call_are_separated():
    assert split("Checking. " + CALL, []) == [
        ("text", "Checking. "),
        ("tool_call", "\n<function=get_time>\n</function>\n"),
    ]


def test_thinking_then_answer():
    assert split("plan it</think>\n\nHello", [], thinking=True) == [("thinking", "plan it"), ("text", "Hello")]


def test_think_block_opened_by_the_model():
    assert split("<think>hm</think>Hi", []) == [("thinking", "hm"), ("text", "Hi")]


def test_unclosed_tool_call_is_reported_not_shown():
    assert split("<tool_call>\n<function=get_ti", []) == [("unclosed_tool_call", "\n<function=get_ti")]


def test_text_that_only_looks_like_a_tag_start_is_released():
    assert split("a < b and <tool", [3]) == [("text", "a < b and <tool")]


def test_two_calls_in_one_message():
    kinds = [k for k, _ in split(CALL + "\n" + CALL, [])]
    assert kinds == ["tool_call", "tool_call"]


@given(st.lists(st.integers(min_value=0, max_value=120), max_size=12))
def test_any_segmentation_gives_the_same_pieces(cuts):
    text = "Sure, one moment. " + CALL + " Done <b>bold</b>."
    assert split(text, cuts) == split(text, [])


@given(st.text(alphabet="<>/tolcah_ ", max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_no_tag_ever_leaks_into_text(noise, cuts):
    for kind, text in split(noise + CALL + noise, cuts):
        if kind == "text":
            assert "<tool_call>" not in text and "</tool_call>" not in text
