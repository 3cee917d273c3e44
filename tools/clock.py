"""Clock tools: what time and day it is, here or elsewhere."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, tzinfo
from functools import lru_cache

from agent.tools import ToolContext, ToolError, ToolResult, tool

# Spelled out here rather than strftime("%A"), which follows the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
# Words (in the config, or from the model) that mean "no particular zone: the usual one".
_LOCAL = {"", "local", "system", "auto"}


@tool
def get_current_time(ctx: ToolContext, timezone: str | None = None) -> str:
    """Get the current date, time, weekday and timezone.

    Args:
        timezone: Only to ask about another place: a city or IANA zone such as "Tokyo" or
            "America/New_York". Leave empty for the user's own time.
    """
    asked = (timezone or "").strip()
    zone = user_zone(ctx) if asked.lower() in _LOCAL else _find_zone(asked)
    now = ctx.clock.now()
    moment = now.astimezone(zone) if zone else now
    return ToolResult(describe(moment), moment)  # the moment as data: replies in other languages


def user_zone(ctx: ToolContext) -> tzinfo | None:
    """The user's configured timezone, or None to keep the clock's own zone."""
    agent_settings = getattr(ctx.settings, "agent", None)
    name = getattr(agent_settings, "timezone", None)
    if name is None or str(name).strip().lower() in _LOCAL:
        return None
    try:
        return zoneinfo.ZoneInfo(str(name).strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"the configured timezone {name!r} is not a known timezone") from None


def describe(moment: datetime) -> str:
    """A date and time nobody can misread, e.g. 'Sunday 31 March 2024, 03:30 (3:30 AM), ...'."""
    hour12 = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return (
        f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]} {moment.year}, "
        f"{moment:%H:%M} ({hour12}:{moment:%M} {half}), "
        f"timezone {_zone_label(moment)}"
    )


def _zone_label(moment: datetime) -> str:
    """'Europe/London (BST, UTC+01:00)', 'CET (UTC+01:00)', 'UTC+02:00' or 'UTC'."""
    offset = moment.strftime("%z")  # "+0100"
    utc = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    key = getattr(moment.tzinfo, "key", None)  # ZoneInfo has a name; fixed offsets do not
    names = [n for n in dict.fromkeys((key, moment.tzname())) if n and n not in (utc, "UTC")]
    if not names:
        return "UTC" if offset in ("", "+0000") else utc
    return f"{names[0]} ({', '.join([*names[1:], utc])})"


def _find_zone(name: str) -> tzinfo:
    """An IANA zone from what a model may write: 'Asia/Tokyo', 'tokyo', 'New York', 'UTC'."""
    wanted = name.strip().replace(" ", "_")
    try:
        return zoneinfo.ZoneInfo(wanted)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    key = _zones_by_city().get(wanted.lower())
    if key is None:
        raise ToolError(
            f"unknown timezone {name!r}; use a city or an IANA name like 'Europe/Paris'"
        )
    return zoneinfo.ZoneInfo(key)


@lru_cache(maxsize=1)
def _zones_by_city() -> dict[str, str]:
    """Lower-case full names and last parts ('tokyo') of every IANA zone, to their key."""
    found: dict[str, str] = {}
    for key in sorted(zoneinfo.available_timezones()):
        found.setdefault(key.lower(), key)
        found.setdefault(key.rsplit("/", 1)[-1].lower(), key)
    return found
