"""The core tools (clock, memory, arithmetic), called the way a turn calls them."""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from agent.store import Store
from agent.tools import FixedClock, ToolArgumentError, ToolContext, ToolError, ToolRegistry
from tools import CORE_TOOL_MODULES

REGISTRY = ToolRegistry()
for _name in CORE_TOOL_MODULES:
    REGISTRY.add_module(importlib.import_module(_name))

NOON_UTC = datetime(2025, 6, 2, 12, 0, tzinfo=timezone.utc)  # a Monday


def call(name: str, ctx: ToolContext | None = None, **arguments) -> str:
    """Validate and run a tool through the registry, as a turn does."""
    tool = REGISTRY.get(name)
    return asyncio.run(tool.call(tool.validate(arguments), ctx or ToolContext(clock=FixedClock(NOON_UTC))))


def settings_in(zone: str | None) -> SimpleNamespace:
    return SimpleNamespace(agent=SimpleNamespace(timezone=zone))


@pytest.fixture
def store(tmp_path):
    with Store.open_in(tmp_path) as opened:
        yield opened


# -- schemas ---------------------------------------------------------------------------------


def test_core_tools_register_with_their_risk_tiers():
    assert REGISTRY.names() == ["get_current_time", "remember", "recall", "forget", "calculate", "set_reminder",
                                "set_timer", "schedule_prompt", "list_schedules", "cancel_schedule"]
    risks = {t.name: t.risk for t in REGISTRY}
    assert risks == {"get_current_time": "read", "remember": "write", "recall": "read", "forget": "write",
                     "calculate": "read", "set_reminder": "write", "set_timer": "write",
                     "schedule_prompt": "write", "list_schedules": "read", "cancel_schedule": "write"}


def test_schemas_are_described_for_the_model():
    required = {"get_current_time": [], "remember": ["fact"], "recall": [], "forget": ["query"],
                "calculate": ["expression"], "set_reminder": ["text", "at"], "set_timer": ["duration"],
                "schedule_prompt": ["prompt"], "list_schedules": [], "cancel_schedule": ["id"]}
    for schema in REGISTRY.schemas():
        function = schema["function"]
        assert 10 < len(function["description"]) < 120, function["name"]
        assert function["parameters"]["required"] == required[function["name"]]
        for name, prop in function["parameters"]["properties"].items():
            assert prop["type"] == "string", (function["name"], name)
            assert prop.get("description"), (function["name"], name)
        assert "ctx" not in function["parameters"]["properties"]


def test_arguments_are_validated_before_a_tool_runs():
    calculate = REGISTRY.get("calculate")
    with pytest.raises(ToolArgumentError, match="missing required argument 'expression'"):
        calculate.validate({})
    with pytest.raises(ToolArgumentError, match="unknown argument 'precision'"):
        calculate.validate({"expression": "1+1", "precision": 3})


# -- clock -----------------------------------------------------------------------------------


def test_time_in_the_configured_timezone():
    ctx = ToolContext(clock=FixedClock(NOON_UTC), settings=settings_in("America/New_York"))
    assert call("get_current_time", ctx) == (
        "Monday 2 June 2025, 08:00 (8:00 AM), timezone America/New_York (EDT, UTC-04:00)"
    )


@pytest.mark.parametrize(
    "utc, expected",
    [
        # Britain moves its clocks forward at 01:00 UTC on 31 March 2024.
        (datetime(2024, 3, 31, 0, 30, tzinfo=timezone.utc),
         "Sunday 31 March 2024, 00:30 (12:30 AM), timezone Europe/London (GMT, UTC+00:00)"),
        (datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc),
         "Sunday 31 March 2024, 02:30 (2:30 AM), timezone Europe/London (BST, UTC+01:00)"),
        (datetime(2024, 12, 31, 23, 59, tzinfo=timezone.utc),
         "Tuesday 31 December 2024, 23:59 (11:59 PM), timezone Europe/London (GMT, UTC+00:00)"),
    ],
)
def test_time_across_a_dst_change(utc, expected):
    ctx = ToolContext(clock=FixedClock(utc), settings=settings_in("Europe/London"))
    assert call("get_current_time", ctx) == expected


@pytest.mark.parametrize("zone", [None, "", "local"])
def test_without_a_configured_timezone_the_clocks_own_zone_is_used(zone):
    tokyo = NOON_UTC.astimezone(ZoneInfo("Asia/Tokyo"))
    ctx = ToolContext(clock=FixedClock(tokyo), settings=settings_in(zone))
    assert call("get_current_time", ctx) == (
        "Monday 2 June 2025, 21:00 (9:00 PM), timezone Asia/Tokyo (JST, UTC+09:00)"
    )


def test_a_fixed_offset_clock_and_no_settings():
    plus_two = NOON_UTC.astimezone(timezone(timedelta(hours=2)))
    assert call("get_current_time", ToolContext(clock=FixedClock(plus_two))).endswith(
        "14:00 (2:00 PM), timezone UTC+02:00"
    )
    assert call("get_current_time").endswith("12:00 (12:00 PM), timezone UTC")


@pytest.mark.parametrize("asked", ["Tokyo", "asia/tokyo", "Asia/Tokyo", "  tokyo "])
def test_time_in_another_place(asked):
    ctx = ToolContext(clock=FixedClock(NOON_UTC), settings=settings_in("Europe/London"))
    answer = call("get_current_time", ctx, timezone=asked)
    assert answer.endswith("21:00 (9:00 PM), timezone Asia/Tokyo (JST, UTC+09:00)")


@pytest.mark.parametrize("asked", ["", "local", " "])
def test_asking_for_no_particular_place_gives_the_users_time(asked):
    ctx = ToolContext(clock=FixedClock(NOON_UTC), settings=settings_in("Europe/London"))
    assert call("get_current_time", ctx, timezone=asked).endswith("timezone Europe/London (BST, UTC+01:00)")


def test_a_city_name_with_spaces():
    assert "America/New_York" in call("get_current_time", timezone="new york")


def test_unknown_timezones_are_tool_errors():
    with pytest.raises(ToolError, match="unknown timezone 'Atlantis'"):
        call("get_current_time", timezone="Atlantis")
    bad_config = ToolContext(clock=FixedClock(NOON_UTC), settings=settings_in("Mars/Olympus"))
    with pytest.raises(ToolError, match="'Mars/Olympus' is not a known timezone"):
        call("get_current_time", bad_config)


# -- arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("0.1+0.2", "0.1+0.2 = 0.3"),
        ("1/3", "1/3 = 1/3 (≈ 0.333333)"),
        ("12.5 * 4 - 3", "12.5 * 4 - 3 = 47"),
        ("(1 + 2) * 3", "(1 + 2) * 3 = 9"),
        ("7 // 2", "7 // 2 = 3"),
        ("-7 % 3", "-7 % 3 = 2"),
        ("10 % 3", "10 % 3 = 1"),
        ("-2 ** 2", "-2 ** 2 = -4"),
        ("2 ** -2", "2 ** -2 = 0.25"),
        ("2^10", "2^10 = 1024"),
        ("3 × 4 ÷ 6", "3 × 4 ÷ 6 = 2"),
        ("2 ** 100", "2 ** 100 = 1267650600228229401496703205376"),
        ("2 ** 1000", "2 ** 1000 ≈ 1.071509e+301"),
        ("1/1024", "1/1024 = 0.0009765625"),
        ("1/7000", "1/7000 = 1/7000 (≈ 0.000142857)"),
        ("1.5e3 + 1_000", "1.5e3 + 1_000 = 2500"),
        ("15% of 80", "15% of 80 = 12"),
        ("12.5% of 64", "12.5% of 64 = 8"),
        ("80 + 15%", "80 + 15% = 92"),
        ("80 - 25%", "80 - 25% = 60"),
        ("50 * 10%", "50 * 10% = 5"),
        ("sqrt(9/4)", "sqrt(9/4) = 1.5"),
        ("sqrt(2)", "sqrt(2) ≈ 1.414214"),
        ("2 + sqrt(4)", "2 + sqrt(4) = 4"),
        ("8 ** (1/3)", "8 ** (1/3) = 2"),
        ("2 ** 0.5", "2 ** 0.5 ≈ 1.414214"),
        ("round(2.5)", "round(2.5) = 3"),
        ("round(-2.5)", "round(-2.5) = -3"),
        ("round(10 / 3, 2)", "round(10 / 3, 2) = 3.33"),
        ("round(1234, -2)", "round(1234, -2) = 1200"),
        ("abs(-3.5)", "abs(-3.5) = 3.5"),
        ("2 * pi", "2 * pi ≈ 6.283185"),
        ("  1 +\n 1 ", "1 + 1 = 2"),
    ],
)
def test_calculate_is_exact(expression, expected):
    assert call("calculate", expression=expression) == expected


@pytest.mark.parametrize(
    "expression, message",
    [
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("1 / (2 - 2)", "division by zero"),
        ("x + 1", "'x' is not a known number"),
        ("__import__('os').system('true')", "is not allowed"),
        ("().__class__", "'().__class__' is not allowed"),
        ("(1).real", "is not allowed"),
        ("print(1)", "'print(1)' is not allowed"),
        ("sqrt(x=4)", "is not allowed"),
        ("[1, 2]", "is not allowed"),
        ("1 < 2", "is not allowed"),
        ("lambda: 1", "is not allowed"),
        ("'12'", "is not a number"),
        ("True + 1", "'True' is not a number"),
        ("2j", "is not a number"),
        ("1 +", "cannot read '1 +' as arithmetic"),
        ("", "the expression is empty"),
        ("1+" * 150 + "1", "too long"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 99999", "too large"),
        ("10 ** 2000 * 10 ** 2000", "too large"),
        ("1e99999", "too large"),
        ("pi ** 1000", "too large"),
        ("sqrt(-1)", "no real result"),
        ("(-8) ** (1/3)", "no real result"),
        ("sqrt(1, 2)", "sqrt() takes 1 number, got 2"),
        ("round()", "round() takes 1 or 2 numbers, got 0"),
        ("round(1, 0.5)", "round's digits must be a whole number"),
    ],
)
def test_calculate_errors_are_tool_errors(expression, message):
    with pytest.raises(ToolError) as caught:
        call("calculate", expression=expression)
    assert message in str(caught.value)


# -- memory ----------------------------------------------------------------------------------


def test_memory_tools_end_to_end(store):
    ctx = ToolContext(store=store, clock=FixedClock(NOON_UTC), who="voice")
    assert call("recall", ctx) == "Memory is empty."
    saved = call("remember", ctx, fact="  The wifi password is   hunter2 ")
    assert saved == "Remembered: The wifi password is hunter2"
    call("remember", ctx, fact="Anna's birthday is on 3 May")
    call("remember", ctx, fact="Ben's birthday is on 9 June")
    assert [f.source for f in store.all_facts()] == ["voice"] * 3

    assert call("recall", ctx, query="wifi password") == (
        "Facts matching 'wifi password', best first:\n- The wifi password is hunter2"
    )
    best = call("recall", ctx, query="When is Anna's birthday?").splitlines()[1]
    assert best == "- Anna's birthday is on 3 May"
    assert call("recall", ctx, query="volcano") == "Nothing in memory matches 'volcano'."
    assert call("recall", ctx, query="").splitlines() == [
        "Saved facts:",
        "- The wifi password is hunter2",
        "- Anna's birthday is on 3 May",
        "- Ben's birthday is on 9 June",
    ]

    assert call("forget", ctx, query="Anna birthday") == "Forgot 1 fact:\n- Anna's birthday is on 3 May"
    assert call("forget", ctx, query="Carl") == "No saved fact matches 'Carl'; nothing was forgotten."
    assert call("forget", ctx, query="birthday") == "Forgot 1 fact:\n- Ben's birthday is on 9 June"
    assert [f.text for f in store.all_facts()] == ["The wifi password is hunter2"]


def test_memory_survives_a_new_store(tmp_path):
    with Store.open_in(tmp_path) as store:
        call("remember", ToolContext(store=store), fact="The bins go out on Tuesday")
    with Store.open_in(tmp_path) as store:
        assert "- The bins go out on Tuesday" in call("recall", ToolContext(store=store), query="bins")


def test_memory_errors(store):
    ctx = ToolContext(store=store)
    with pytest.raises(ToolError, match="empty"):
        call("remember", ctx, fact="   ")
    with pytest.raises(ToolError, match="too long"):
        call("remember", ctx, fact="word " * 200)
    with pytest.raises(ToolError, match="which fact"):
        call("forget", ctx, query=" ")
    assert call("recall", ctx, query='"AND* -:') == "Nothing in memory matches '\"AND* -:'."


@pytest.mark.parametrize(
    "name, arguments",
    [("remember", {"fact": "x"}), ("recall", {"query": "x"}), ("forget", {"query": "x"})],
)
def test_memory_without_a_store_is_a_tool_error(name, arguments):
    with pytest.raises(ToolError, match="memory is not available"):
        call(name, ToolContext(), **arguments)
