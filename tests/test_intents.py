"""The fast phrase path: templates, tolerance, near-misses, tiers, step events, the bench."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from agent.events import ReplyDone, TextDelta, ToolFinished, ToolStarted
from agent.actions import Executor
from agent.skills.intents import IntentMatcher, answer_intent
from agent.skills.phrases import PhraseSpec, normalize, parse_template
from agent.config.settings import load_settings
from agent.skills.loader import load_skills
from agent.store import Store
from agent.tools import ToolContext, ToolRegistry

HOME_SKILL = '''\
---
name: lights
description: Switch the lights and other things of the home.
slots:
  state: {on: [switched on], off: [switched off]}
  level: number
  item: text
phrases:
  - template:
      - "(turn|switch) {state} [the] {device} [in the {room}]"
      - "turn [the] {device} {state}"
    tool: set_device
    args: {device: "{device}", state: "{state}", room: "{room}"}
    reply: "{device} {state}."
  - template: "set [the] {device} to {level} [percent|%]"
    tool: set_level
    args: {device: "{device}", level: "{level}"}
    reply: "{device} at {level} percent."
  - template: "unlock [the] {door}"
    tool: unlock
    args: {door: "{door}"}
    reply: "{door} unlocked."
  - template: "add {item} to [the|my] shopping list"
    tool: add_item
    args: {item: "{item}"}
    reply: "Added {item}: {result}"
  - template: "add milk to [the|my] shopping list"
    tool: add_item
    args: {item: "milk (the usual)"}
---
Lights and switches.
'''
HOME_TOOLS = '''\
from typing import Literal

from agent import ToolError, tool

CALLS = []


@tool(risk="write")
def set_device(device: str, state: Literal["on", "off"], room: str | None = None) -> str:
    """Switch a device on or off.

    Args:
        device: The device.
        state: on or off.
        room: The room.
    """
    CALLS.append(("set_device", device, state, room))
    return f"{device} is {state}"


@tool(risk="write")
def set_level(device: str, level: int) -> str:
    """Dim a device.

    Args:
        device: The device.
        level: Percent, 0 to 100.
    """
    if not 0 <= level <= 100:
        raise ToolError("level must be 0 to 100")
    CALLS.append(("set_level", device, level))
    return "ok"


@tool(risk="confirm")
def unlock(door: str) -> str:
    """Unlock a door.

    Args:
        door: Which door.
    """
    CALLS.append(("unlock", door))
    return f"{door} unlocked"


@tool(risk="write")
def add_item(item: str) -> str:
    """Add to the shopping list.

    Args:
        item: What to buy.
    """
    CALLS.append(("add_item", item))
    return "3 items on the list"
'''
SLOT_VALUES = {
    "device": ["Kitchen lights", "Living room lamp", "Kitchen"],
    "room": ["kitchen", "living room"],
    "door": ["Front door", "Back door"],
}


@pytest.fixture
def setup(tmp_path):
    """A real skill folder (bundled, so trusted), its real registry, and the matcher."""
    folder = tmp_path / "bundled" / "lights"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(HOME_SKILL, encoding="utf-8")
    (folder / "tools.py").write_text(HOME_TOOLS, encoding="utf-8")
    skillset = load_skills(load_settings(), tmp_path, bundled_dir=tmp_path / "bundled")
    skill = skillset.get("lights")
    assert skill.enabled, skill.problems
    registry = ToolRegistry()
    skillset.register(registry)
    matcher = IntentMatcher.from_skills(skillset, registry, SLOT_VALUES, fillers=["agentd"])
    assert matcher.problems == []
    calls = skill.tools[0].function.__globals__["CALLS"]
    return matcher, registry, calls


def fits(matcher, text):
    found = matcher.match(text)
    return None if found is None else (found.tool, found.arguments)


# ---------------------------------------------------------------------------- templates


def test_normalize_drops_case_punctuation_and_apostrophes_but_keeps_numbers():
    assert normalize("  Turn ON the Kitchen-Lights!!  ") == "turn on the kitchen lights"
    assert normalize("What's 2.5 cups, or 1/2?") == "whats 2.5 cups or 1/2"


@pytest.mark.parametrize("template, problem", [
    ("turn [the lights", "[ is never closed"),
    ("turn the lights]", "unexpected ']'"),
    ("turn {state", "unmatched '{' or '}'"),
    ("turn {State}", "needs a lower-case name"),
    ("{a} and {a}", "appears twice"),
    ("a | b", "unexpected '|'"),
    ("?!", "has no words"),
])
def test_bad_templates_say_what_is_wrong(template, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]").replace("|", r"\|")):
        parse_template(template)


def test_phrase_args_must_use_slots_the_template_has():
    with pytest.raises(ValueError, match=r"args use \{device\}, which no template has"):
        PhraseSpec(template="turn on", tool="t", args={"device": "{device}"})
    with pytest.raises(ValueError, match=r"reply use \{room\}"):
        PhraseSpec(template="turn on {device}", tool="t", reply="{room}")
    assert PhraseSpec(template="turn on {device}", tool="t", reply="{result}").template == ["turn on {device}"]


def test_slots_optional_words_and_alternatives(setup):
    matcher, _, _ = setup
    assert fits(matcher, "turn on the kitchen lights") == ("set_device", {"device": "Kitchen lights", "state": "on", "room": None})
    assert fits(matcher, "turn off kitchen lights") == ("set_device", {"device": "Kitchen lights", "state": "off", "room": None})
    assert fits(matcher, "turn the living room lamp switched off")[1]["state"] == "off"  # a mapping slot's other form
    assert fits(matcher, "switch on the kitchen lights in the living room") == (
        "set_device", {"device": "Kitchen lights", "state": "on", "room": "living room"})
    assert fits(matcher, "set the kitchen lights to 40 percent") == ("set_level", {"device": "Kitchen lights", "level": 40})
    assert fits(matcher, "set kitchen lights to 40%") == ("set_level", {"device": "Kitchen lights", "level": 40})
    assert fits(matcher, "add oat milk to my shopping list") == ("add_item", {"item": "oat milk"})


def test_the_longest_device_name_and_the_most_specific_template_win(setup):
    matcher, _, _ = setup
    assert fits(matcher, "turn on the kitchen")[1]["device"] == "Kitchen"
    assert fits(matcher, "turn on the kitchen lights")[1]["device"] == "Kitchen lights"
    assert fits(matcher, "add milk to the shopping list") == ("add_item", {"item": "milk (the usual)"})


@pytest.mark.parametrize("text", [
    "Turn ON the Kitchen Lights.",
    "turn on the kitchen lights, please",
    "Please turn on the kitchen lights!",
    "Hey, could you please turn on the kitchen lights? Thanks",
    "can you turn on the kitchen-lights",
    "hey agentd turn on the kitchen lights",
    "  turn   on the KITCHEN lights  ",
])
def test_case_punctuation_and_fillers_do_not_matter(setup, text):
    matcher, _, _ = setup
    assert fits(matcher, text) == ("set_device", {"device": "Kitchen lights", "state": "on", "room": None})


@pytest.mark.parametrize("text", [
    "turn the kitchen lights into a disco",
    "what if I turn on the lights",
    "what if i turn on the kitchen lights",
    "turn on the lights",  # no such device: the model can ask which
    "turn on the kitchen lights and the living room lamp",
    "don't turn on the kitchen lights",
    "set the kitchen lights to forty percent",
    "turn on",
    "please",
    "",
])
def test_near_misses_go_to_the_model(setup, text):
    matcher, _, _ = setup
    assert matcher.match(text) is None


def test_arguments_the_schema_refuses_fall_through_to_the_model(tmp_path, setup):
    matcher, registry, _ = setup
    skillset = load_skills(load_settings(), tmp_path, bundled_dir=tmp_path / "bundled")
    # "blue" is a state the slot allows but the tool's Literal["on", "off"] does not.
    skillset.get("lights").slots["state"] = ["on", "off", "blue"]
    strict = IntentMatcher.from_skills(skillset, registry, SLOT_VALUES)
    assert strict.match("turn blue the kitchen lights") is None
    assert "fits, but set_device: argument 'state'" in strict.explain("turn blue the kitchen lights")


def test_explain_says_which_path_and_why(setup):
    matcher, _, _ = setup
    assert matcher.explain("Turn on the kitchen lights please") == (
        "phrase path: '(turn|switch) {state} [the] {device} [in the {room}]' (skill lights) fits 'turn on the kitchen lights' "
        "with state='on', device='Kitchen lights'")
    assert matcher.explain("what if I turn on the lights") == (
        "model: no phrase fits 'what if i turn on the lights' (6 templates)")


def test_compile_problems_are_reported_not_raised(setup, tmp_path):
    _, registry, _ = setup
    folder = tmp_path / "more" / "odd"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(textwrap.dedent('''\
        ---
        name: odd
        description: Phrases that cannot run.
        phrases:
          - {template: "frobnicate [the] {device}", tool: no_such_tool}
          - {template: "paint [the] {wall}", tool: set_device, args: {device: "{wall}"}}
          - {template: "please turn on [the] {device}", tool: set_device, args: {device: "{device}"}}
        ---
        '''), encoding="utf-8")
    skillset = load_skills(load_settings(), tmp_path, bundled_dir=tmp_path / "more")
    matcher = IntentMatcher.from_skills(skillset, registry, SLOT_VALUES)
    assert matcher.problems == [
        "skill odd: phrase 'frobnicate [the] {device}': there is no tool named 'no_such_tool'",
        "skill odd: phrase 'paint [the] {wall}': no values for slot {wall} (add it under slots:)",
        "skill odd: phrase 'please turn on [the] {device}': starts or ends with a filler word, which is never matched",
    ]
    assert len(matcher) == 0


def test_disabled_skills_have_no_phrases(tmp_path, setup):
    _, registry, _ = setup
    settings = load_settings(overrides={"skills.disabled": ["lights"]})
    skillset = load_skills(settings, tmp_path, bundled_dir=tmp_path / "bundled")
    assert len(IntentMatcher.from_skills(skillset, registry, SLOT_VALUES)) == 0


def test_the_bundled_kitchen_phrases(tmp_path):
    skillset = load_skills(load_settings(), tmp_path)
    registry = ToolRegistry()
    skillset.register(registry)
    matcher = IntentMatcher.from_skills(skillset, registry, {})
    assert [p for p in matcher.problems if "kitchen" in p] == []
    found = matcher.match("How many grams are in 2 cups of flour?")
    assert (found.tool, found.arguments) == ("convert_units", {"amount": 2.0, "from_unit": "cup", "to_unit": "g", "ingredient": "flour"})
    found = matcher.match("convert 1/2 cup to tablespoons")
    assert found.arguments["amount"] == 0.5
    events = asyncio.run(collect(answer_intent(matcher.match("what's 180 degrees c in fahrenheit"), Executor(registry), ToolContext())))
    assert events[-1].text == "180 °C is about 356 °F."


# ---------------------------------------------------------------------------- answering


async def collect(stream):
    return [event async for event in stream]


def test_a_match_answers_with_the_same_step_events_as_a_turn(setup, tmp_path):
    matcher, registry, calls = setup
    store = Store(tmp_path / "agentd.db")
    conversation = store.new_conversation(source="chat")
    saved = []
    ctx = ToolContext(store=store, who="chat", conversation_id=conversation)
    events = asyncio.run(collect(answer_intent(matcher.match("turn on the kitchen lights"), Executor(registry, store=store), ctx, save=saved.append)))
    assert [type(e) for e in events] == [ToolStarted, ToolFinished, TextDelta, ReplyDone]
    started, finished, delta, done = events
    assert (started.name, started.arguments, started.risk) == ("set_device", {"device": "Kitchen lights", "state": "on"}, "write")
    assert finished.ok and finished.result == "Kitchen lights is on" and finished.call_id == started.call_id
    assert delta.text == done.text == "Kitchen lights on."
    assert done.stopped_by == "done" and done.stats.model_calls == 0
    assert calls == [("set_device", "Kitchen lights", "on", None)]
    assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
    assert saved[1]["tool_calls"][0]["function"]["name"] == "set_device"
    entry = store.audit_entries()[0]
    assert (entry.tool, entry.outcome, entry.who, entry.detail) == ("set_device", "ok", "chat", "phrase '(turn|switch) {state} [the] {device} [in the {room}]'")
    store.close()


def test_reply_can_use_the_tools_result_and_defaults_to_it(setup):
    matcher, registry, _ = setup
    done = asyncio.run(collect(answer_intent(matcher.match("add eggs to the shopping list"), Executor(registry), ToolContext())))[-1]
    assert done.text == "Added eggs: 3 items on the list"
    done = asyncio.run(collect(answer_intent(matcher.match("add milk to the shopping list"), Executor(registry), ToolContext())))[-1]
    assert done.text == "3 items on the list"


def test_a_tool_error_is_the_reply(setup):
    matcher, registry, calls = setup
    events = asyncio.run(collect(answer_intent(matcher.match("set the kitchen lights to 400 percent"), Executor(registry), ToolContext())))
    assert not events[1].ok and events[1].result == "Error: level must be 0 to 100"
    assert events[-1].text == "That did not work: level must be 0 to 100"
    assert calls == []


def test_a_confirm_tier_tool_still_asks(setup):
    matcher, registry, calls = setup
    match = matcher.match("unlock the front door")
    asked = []

    async def yes(tool, arguments):
        asked.append((tool.name, arguments))
        return True

    events = asyncio.run(collect(answer_intent(match, Executor(registry), ToolContext(), yes)))
    assert asked == [("unlock", {"door": "Front door"})]
    assert events[1].ok and events[-1].text == "Front door unlocked."
    assert calls == [("unlock", "Front door")]


def test_a_confirm_tier_tool_is_denied_without_a_yes(setup, tmp_path):
    matcher, registry, calls = setup
    match = matcher.match("unlock the back door")

    async def no(tool, arguments):
        return False

    store = Store(tmp_path / "agentd.db")
    for confirm in (None, no):
        events = asyncio.run(collect(answer_intent(match, Executor(registry, store=store), ToolContext(), confirm)))
        assert events[1].ok is False and events[1].outcome == "denied"
        assert events[-1].text == "Not done: that needs your confirmation."
    assert calls == []
    assert [e.outcome for e in store.audit_entries()] == ["denied", "denied"]
    store.close()


# ---------------------------------------------------------------------------- speed


def test_bench_figure_1000_templates():
    from bench.intents import run

    result = run(count=1000, calls=3000)
    print(f"\nintents: {result['templates']} templates, p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms")
    assert result["templates"] == 1000 and result["problems"] == 0
    assert result["matched"] > 1000
    # The goal is 1 ms; this machine is shared with other work, so allow it some noise.
    assert result["p99_ms"] <= 2.0


def test_vocabulary_lists_device_names_first_for_speech_recognition(setup):
    matcher, _, _ = setup
    words = matcher.vocabulary()
    assert words == ["kitchen lights", "living room lamp", "kitchen", "living room"]  # devices, then rooms, once each
    assert "switched on" not in words  # common words Whisper knows are left out
    assert matcher.vocabulary(limit=2) == ["kitchen lights", "living room lamp"]
