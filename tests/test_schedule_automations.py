"""YAML automations: each is checked on its own, and synced by id into jobs.db."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml

from agent.schedule import Scheduler
from agent.schedule.automations import load_automations
from agent.config.settings import ConfigError, default_config_path, load_settings
from agent.store import Store
from agent.tools import ToolRegistry, tool
from tools import CORE_TOOL_MODULES

UTC = timezone.utc


@tool(risk="confirm")
def unlock_door(door: str) -> str:
    """Unlock a door.

    Args:
        door: Which door.
    """
    return f"{door} unlocked"


def registry() -> ToolRegistry:
    found = ToolRegistry()
    for name in CORE_TOOL_MODULES:
        found.add_module(importlib.import_module(name))
    found.add(unlock_door)
    return found


def entries(text: str) -> list:
    return yaml.safe_load(text)


GOOD = """
- id: morning
  trigger: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}
  action: {prompt: "What is on today?"}
  speak: true
- id: water-plants
  trigger: {every: 2 days}
  action: {say: "Water the plants"}
- id: sum
  trigger: {at: 2030-01-01 09:00}
  action: {tool: calculate, args: {expression: "2+2"}}
"""


def test_good_automations_load_with_their_triggers_and_specs():
    loaded, problems = load_automations(entries(GOOD), tz=ZoneInfo("UTC"), registry=registry())
    assert problems == []
    assert [a.id for a in loaded] == ["morning", "water-plants", "sum"]
    morning = loaded[0]
    assert str(morning.trigger.timezone) == "Europe/Berlin"
    assert morning.spec["action"] == {"prompt": "What is on today?"} and morning.spec["speak"] is True
    assert loaded[2].spec["action"] == {"tool": "calculate", "args": {"expression": "2+2"}}


BAD = """
- id: ok
  trigger: {every: 1h}
  action: {say: hi}
- id: bad-cron
  trigger: {cron: "0 25 * * *"}
  action: {say: hi}
- id: short-cron
  trigger: {cron: "0 7 * *"}
  action: {say: hi}
- id: no-such-tool
  trigger: {every: 1h}
  action: {tool: launch_rockets}
- id: bad-args
  trigger: {every: 1h}
  action: {tool: calculate, args: {expr: "1+1"}}
- id: unallowed
  trigger: {every: 1h}
  action: {tool: unlock_door, args: {door: front}}
- id: typo-allow
  trigger: {every: 1h}
  action: {prompt: hi}
  allow: [unlock_dor]
- id: two-triggers
  trigger: {every: 1h, cron: "* * * * *"}
  action: {say: hi}
- id: relative-at
  trigger: {at: tomorrow}
  action: {say: hi}
- id: bad-zone
  trigger: {every: 1h, timezone: Mars/Olympus}
  action: {say: hi}
- id: bad every
  trigger: {every: 1h}
  action: {say: hi}
- id: ok
  trigger: {every: 2h}
  action: {say: again}
- id: speak-maybe
  trigger: {every: 1h}
  action: {say: hi}
  speak: maybe
"""


def test_each_bad_automation_is_named_with_its_field_and_the_rest_still_load():
    loaded, problems = load_automations(entries(BAD), tz=ZoneInfo("UTC"), registry=registry())
    assert [a.id for a in loaded] == ["ok"]
    assert problems == [
        "automation 'bad-cron': trigger.cron: Error validating expression '25': the last value (25) is higher than the maximum value (23)",
        "automation 'short-cron': trigger.cron: expected 5 fields (minute hour day month weekday), got 4 in '0 7 * *'",
        f"automation 'no-such-tool': action.tool: no tool named 'launch_rockets' (known: {', '.join(registry().names())})",
        "automation 'bad-args': action.args: calculate: missing required argument 'expression'; unknown argument 'expr'",
        "automation 'unallowed': action.tool: 'unlock_door' is a confirm-tier tool: name it in allow to run it unattended",
        "automation 'typo-allow': allow: no tool named 'unlock_dor'",
        "automation 'two-triggers': trigger: give exactly one of cron, every, at or state (got cron, every)",
        "automation 'relative-at': trigger.at: expected a date and time like 2025-06-02 18:00, got 'tomorrow'",
        "automation 'bad-zone': trigger.timezone: expected an IANA time zone such as 'Europe/Paris', got 'Mars/Olympus'",
        "automation 'bad every': id: use letters, digits, '-', '_' and '.' (at most 64), got 'bad every'",
        "automation 'ok': id: automation #1 has the same id",
        "automation 'speak-maybe': speak: expected true or false, got 'maybe'",
    ]


def test_the_example_in_default_yaml_is_a_valid_automation():
    text = default_config_path().read_text(encoding="utf-8")
    block = text[text.index("# Automations:"):text.index("automations: []")]
    example = "\n".join(line[2:] for line in block.splitlines() if line.startswith("#   "))
    loaded, problems = load_automations(yaml.safe_load(example), tz=UTC, registry=registry())
    assert problems == [] and [a.id for a in loaded] == ["morning-briefing"]


def test_entries_that_are_not_mappings_are_named_by_position():
    _, problems = load_automations(["just words", {"trigger": {"every": "1h"}, "action": {"say": "x"}}], tz=UTC)
    assert problems == [
        "automation #1: (entry): expected a mapping with id, trigger and action, got 'just words'",
        "automation #2: id: required key is missing",
    ]


def test_the_config_file_takes_automations_and_schedule_settings(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("schedule:\n  misfire_grace_s: 60\nautomations:" + GOOD.replace("\n", "\n  "))
    settings = load_settings(path)
    assert settings.schedule.misfire_grace_s == 60 and [a["id"] for a in settings.automations] == ["morning", "water-plants", "sum"]
    path.write_text("automations:\n#  - id: commented out\n")
    assert load_settings(path).automations == []
    path.write_text("automations: {id: x}\n")
    with pytest.raises(ConfigError, match="automations: expected a list"):
        load_settings(path)


# -- sync --------------------------------------------------------------------------------------


@pytest.fixture
def scheduler(tmp_path):
    store = Store.open_in(tmp_path)
    scheduler = Scheduler.offline(tmp_path, load_settings(), store)
    scheduler.runtime.registry = registry()
    yield scheduler
    scheduler.shutdown()
    store.close()


def reopen(scheduler: Scheduler) -> Scheduler:
    scheduler.shutdown()
    fresh = Scheduler.offline(scheduler.home, scheduler.settings, scheduler.runtime.store)
    fresh.runtime.registry = scheduler.runtime.registry
    return fresh


def test_sync_adds_updates_and_removes_by_id_and_leaves_agent_jobs_alone(scheduler):
    reminder = scheduler.add_reminder("call mum", datetime.now(UTC) + timedelta(hours=1))
    first = scheduler.sync_automations(entries(GOOD))
    assert (sorted(first.added), first.updated, first.removed) == (["morning", "sum", "water-plants"], [], [])
    morning_next = scheduler.job("morning").next_run

    changed = entries(GOOD)[:2]
    changed[1]["action"] = {"say": "Water the plants, and the fern"}
    scheduler = reopen(scheduler)  # as after a restart
    second = scheduler.sync_automations(changed)
    assert (second.added, second.updated, second.removed, second.unchanged) == ([], ["water-plants"], ["sum"], ["morning"])
    assert scheduler.job("morning").next_run == morning_next
    assert {j.id for j in scheduler.jobs()} == {"morning", "water-plants", reminder.id}
    assert scheduler.job(reminder.id).source == "agent"

    third = scheduler.sync_automations([])
    assert sorted(third.removed) == ["morning", "water-plants"]
    assert [j.id for j in scheduler.jobs()] == [reminder.id]


def test_an_unchanged_automation_keeps_a_run_that_fell_due_while_agentd_was_down(scheduler):
    scheduler.sync_automations(entries(GOOD))
    past = datetime.now(UTC) - timedelta(minutes=3)
    scheduler.aps.modify_job("water-plants", "config", next_run_time=past)
    scheduler = reopen(scheduler)
    assert scheduler.sync_automations(entries(GOOD)).unchanged == ["morning", "water-plants", "sum"]
    assert scheduler.job("water-plants").next_run == past


def test_a_disabled_automation_is_kept_paused_and_cannot_be_resumed_by_hand(scheduler):
    items = entries(GOOD)
    items[1]["enabled"] = False
    scheduler.sync_automations(items)
    assert scheduler.job("water-plants").state == "disabled"
    with pytest.raises(ValueError, match="disabled in the config"):
        scheduler.resume("water-plants")


def test_a_bad_automation_does_not_stop_the_others_and_is_reported(scheduler):
    items = entries(GOOD) + [{"id": "broken", "trigger": {"cron": "nope"}, "action": {"say": "x"}}]
    report = scheduler.sync_automations(items)
    assert sorted(report.added) == ["morning", "sum", "water-plants"]
    assert report.problems == ["automation 'broken': trigger.cron: expected 5 fields (minute hour day month weekday), got 1 in 'nope'"]
    assert scheduler.problems == report.problems


def test_an_automation_may_not_take_the_id_of_an_agent_job(scheduler):
    reminder = scheduler.add_reminder("x", datetime.now(UTC) + timedelta(hours=1))
    report = scheduler.sync_automations([{"id": reminder.id, "trigger": {"every": "1h"}, "action": {"say": "x"}}])
    assert report.added == [] and "a job the agent made has this id" in report.problems[0]


def test_state_triggers_wait_for_home_control(scheduler):
    items = [{"id": "door-open", "trigger": {"state": {"device": "front door", "to": "open", "for": "5m"}}, "action": {"say": "The door is open"}}]
    report = scheduler.sync_automations(items)
    assert report.problems == ["automation 'door-open': trigger.state: state triggers need home control, which is not running"]
    handed = []
    scheduler.state_hook = handed.append  # what home control will plug in
    assert scheduler.sync_automations(items).problems == []
    assert [a.id for a in handed[0]] == ["door-open"] and handed[0][0].automation.trigger.state.for_ == "5m"


def test_a_one_off_automation_that_already_ran_is_not_added_again(scheduler):
    due = datetime.now(UTC) - timedelta(minutes=1)
    items = [{"id": "once", "trigger": {"at": due.isoformat()}, "action": {"say": "once"}}]
    assert scheduler.sync_automations(items).added == ["once"]  # due while down: it will run (or be missed)
    scheduler.remove("once")  # as after it ran
    scheduler.runtime.store.add_receipt("once", "automation", due, datetime.now(UTC), "ok", "once")
    assert scheduler.sync_automations(items).added == []
