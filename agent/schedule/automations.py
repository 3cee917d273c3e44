"""Automations written in the YAML config: one pydantic model each, checked one by one.

    automations:
      - id: morning-briefing
        trigger: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}   # or every: 30m, or at: 2025-06-02 18:00
        action: {prompt: "What is on today?"}                      # or {tool: NAME, args: {...}}, or {say: TEXT}
        speak: true
        enabled: true
        allow: []        # confirm-tier tools this automation may use with nobody to ask

A bad automation (bad cron line, unknown tool, arguments that do not fit the tool's schema)
is reported as "automation 'ID': FIELD: why" and skipped; the others still load.

State triggers, `trigger: {state: {device, to, for}}`, parse here but are not apscheduler
jobs: the scheduler hands them to its `state_hook` (agent.home_control.state_watch, which
listens to the devices' MQTT state topics); with no hook they are reported as a problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.schedule.spec import make_spec
from agent.schedule.triggers import cron_trigger, every_trigger
from agent.tools import ToolArgumentError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AutomationError(ValueError):
    """One automation cannot be scheduled; the message starts with the field."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class StateTrigger(_Strict):
    """Run when a device reaches a state, optionally for a while (needs home control)."""

    device: str = Field(min_length=1)
    to: str | int | float | bool
    for_: str | int | float | None = Field(None, alias="for")


class TriggerSpec(_Strict):
    """When an automation runs: exactly one of cron, every, at or state."""

    cron: str | dict[str, Any] | None = None
    every: str | int | float | None = None
    at: datetime | str | None = None
    timezone: str | None = None
    state: StateTrigger | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TriggerSpec:
        given = [k for k in ("cron", "every", "at", "state") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cron, every, at or state (got {', '.join(given) or 'none'})")
        return self


class Action(_Strict):
    """What an automation does: an agent turn, a direct tool call, or words to say."""

    prompt: str | None = Field(None, min_length=1)
    tool: str | None = Field(None, min_length=1)
    args: dict[str, Any] | None = None
    say: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        given = [k for k in ("prompt", "tool", "say") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of prompt, tool or say (got {', '.join(given) or 'none'})")
        if self.args is not None and self.tool is None:
            raise ValueError("args go with tool")
        return self

    def as_dict(self) -> dict:
        if self.tool is not None:
            return {"tool": self.tool, "args": dict(self.args or {})}
        return {"prompt": self.prompt} if self.prompt is not None else {"say": self.say}


class Automation(_Strict):
    """One entry of `automations:` in the config."""

    id: str = Field(pattern=ID_PATTERN)
    trigger: TriggerSpec
    action: Action
    speak: bool = False
    enabled: bool = True
    allow: list[str] = []


@dataclass(frozen=True)
class LoadedAutomation:
    """An automation that passed every check, with its trigger and job spec."""

    automation: Automation
    trigger: BaseTrigger | None  # None: a state trigger, which apscheduler does not run
    spec: dict

    @property
    def id(self) -> str:
        return self.automation.id


def load_automations(raw: list | None, *, tz: tzinfo, registry: Any = None) -> tuple[list[LoadedAutomation], list[str]]:
    """Check each entry on its own: (the good ones, one message per problem).

    Without a tool registry (the `agentd jobs` command), tool names and arguments are not checked.
    """
    loaded: list[LoadedAutomation] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(raw or [], start=1):
        name = item.get("id") if isinstance(item, dict) else None
        label = f"automation {name!r}" if isinstance(name, str) else f"automation #{number}"
        try:
            automation = Automation.model_validate(item)
            if automation.id in seen:
                raise AutomationError("id", f"automation #{seen[automation.id]} has the same id")
            seen[automation.id] = number
            check_tools(automation, registry)
            zone = _zone(automation.trigger.timezone, tz)
            trigger = build_trigger(automation.trigger, zone)
            loaded.append(LoadedAutomation(automation, trigger, _spec(automation, zone)))
        except ValidationError as exc:
            problems.extend(f"{label}: {where}: {why}" for where, why in _errors(exc))
        except AutomationError as exc:
            problems.append(f"{label}: {exc}")
    return loaded, problems


def check_tools(automation: Automation, registry: Any) -> None:
    """The action's tool exists and takes these arguments; allow names real tools."""
    if registry is None:
        return
    for name in automation.allow:
        if registry.get(name) is None:
            raise AutomationError("allow", f"no tool named {name!r}")
    action = automation.action
    if action.tool is None:
        return
    tool = registry.get(action.tool)
    if tool is None:
        raise AutomationError("action.tool", f"no tool named {action.tool!r} (known: {', '.join(registry.names())})")
    try:
        tool.validate(action.args or {})
    except ToolArgumentError as exc:
        raise AutomationError("action.args", str(exc)) from None
    if tool.risk == "confirm" and tool.name not in automation.allow:
        raise AutomationError("action.tool",
                              f"{tool.name!r} is a confirm-tier tool: name it in allow to run it unattended")


def build_trigger(spec: TriggerSpec, tz: tzinfo) -> BaseTrigger | None:
    """The apscheduler trigger for a time trigger; None for a state trigger."""
    if spec.state is not None:
        return None
    try:
        if spec.cron is not None:
            return cron_trigger(spec.cron, tz)
        if spec.every is not None:
            return every_trigger(spec.every, tz)
    except ValueError as exc:
        raise AutomationError(f"trigger.{'cron' if spec.cron is not None else 'every'}", str(exc)) from None
    return DateTrigger(run_date=_moment(spec.at, tz), timezone=tz)


def _moment(at: datetime | str, tz: tzinfo) -> datetime:
    """An absolute date and time: a relative one ('tomorrow') would move at every restart."""
    try:
        moment = at if isinstance(at, datetime) else datetime.fromisoformat(at.strip())
    except ValueError:
        raise AutomationError("trigger.at", f"expected a date and time like 2025-06-02 18:00, got {at!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _zone(name: str | None, default: tzinfo) -> tzinfo:
    if name is None:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        why = f"expected an IANA time zone such as 'Europe/Paris', got {name!r}"
        raise AutomationError("trigger.timezone", why) from None


def _spec(automation: Automation, tz: tzinfo) -> dict:
    trigger = automation.trigger
    kind = next(k for k in ("cron", "every", "at", "state") if getattr(trigger, k) is not None)
    when = f"{kind} {getattr(trigger, kind)}"
    # The zone counts: changing agent.timezone must move a cron job that did not name its own.
    body = json.dumps([automation.model_dump(mode="json", by_alias=True), str(tz)], sort_keys=True)
    return make_spec(
        "automation", automation.action.as_dict(), label=automation.id, when=when, speak=automation.speak,
        allow=automation.allow, enabled=automation.enabled, fingerprint=hashlib.sha256(body.encode()).hexdigest()[:16],
    )


_WORDS = {"str": "text", "datetime": "a date and time", "int": "a number", "float": "a number",
          "bool": "true or false", "dict[str,any]": "a mapping", "list[str]": "a list of names",
          "StateTrigger": "a mapping"}
_EXPECTED = {
    "bool_type": "expected true or false", "string_type": "expected text", "list_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "string_too_short": "expected non-empty text",
    "string_pattern_mismatch": "use letters, digits, '-', '_' and '.' (at most 64)",
}


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, why) for each pydantic error, in the config's own key names."""
    found: dict[str, str] = {}
    union_tags: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        names = [str(p) for p in err["loc"]]
        loc = [n for n in names if n not in _WORDS]
        where = ".".join(loc) or "(entry)"
        tags = [n for n in names if n in _WORDS]
        if tags:  # one error per member of a union (datetime | str): say what was expected instead
            union_tags.setdefault(where, []).append(_WORDS[tags[-1]])
            found[where] = f"expected {' or '.join(dict.fromkeys(union_tags[where]))}, got {err.get('input')!r}"
        elif err["type"] == "extra_forbidden":
            found[where] = "unknown key"
        elif err["type"] == "missing":
            found[where] = "required key is missing"
        elif err["type"] == "value_error":
            found[where] = str(err.get("ctx", {}).get("error", err["msg"]))
        elif where == "(entry)":
            found[where] = f"expected a mapping with id, trigger and action, got {err.get('input')!r}"
        else:
            found[where] = f"{_EXPECTED.get(err['type'], err['msg'])}, got {err.get('input')!r}"
    return list(found.items())
