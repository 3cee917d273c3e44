"""Durations and moments as people (and small models) write them: "10 minutes", "6 pm", "tomorrow 7:30"."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?|an?|half an?)\s*([a-z]+)")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?$")


def parse_duration(text: str | int | float) -> timedelta:
    """'90', '90s', '10 minutes', '1h30m', 'half an hour', '5:00' -> a timedelta."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        seconds = _duration_seconds(str(text).strip().lower())
    if seconds <= 0:
        raise ValueError(f"a duration must be more than zero, got {text!r}")
    return timedelta(seconds=seconds)


def _duration_seconds(words: str) -> float:
    if re.fullmatch(r"\d+(\.\d+)?", words):
        return float(words)  # a bare number is seconds
    if re.fullmatch(r"\d+(:\d{2}){1,2}", words):  # 5:00 is m:ss, 1:05:00 is h:mm:ss
        parts = [int(p) for p in words.split(":")]
        return sum(p * 60**i for i, p in enumerate(reversed(parts)))
    cleaned = words.replace(",", " ").replace(" and ", " ")
    total, found = 0.0, False
    for amount, unit in _AMOUNT.findall(cleaned):
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {words!r} (use s, m, h, d or w)")
        number = 0.5 if amount.startswith("half") else 1.0 if amount in ("a", "an") else float(amount)
        total, found = total + number * _UNITS[unit], True
    if not found or _AMOUNT.sub("", cleaned).strip():
        raise ValueError(f"cannot read {words!r} as a duration (try '10 minutes' or '1h30m')")
    return total


def parse_when(text: str | datetime, now: datetime, tz: tzinfo | None = None) -> datetime:
    """A moment from 'in 10 minutes', '18:00', '6 pm', 'tomorrow 7:30', 'friday 9am' or ISO 8601.

    Times without a date mean the next time the clock shows them; naive times are in `tz`
    (default: `now`'s zone). The result is timezone-aware.
    """
    tz = tz or now.tzinfo or timezone.utc
    now = now.astimezone(tz)
    if isinstance(text, datetime):
        return _aware(text, tz)
    words = " ".join(str(text).strip().lower().split())
    if words.startswith("in "):
        return now + parse_duration(words[3:])
    try:
        return _aware(datetime.fromisoformat(words.replace(" ", "T", 1) if _looks_iso(words) else words), tz)
    except ValueError:
        pass
    day, clock = _split_day(words, now.date())
    if not clock:
        raise ValueError(f"{words!r} needs a time of day too, e.g. '{words} 9:00'")
    at = _clock_time(clock, words)
    if day is None:
        moment = _aware(datetime.combine(now.date(), at), tz)
        return moment if moment > now else _aware(datetime.combine(now.date() + timedelta(days=1), at), tz)
    return _aware(datetime.combine(day, at), tz)


def _looks_iso(words: str) -> bool:
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}", words))


def _split_day(words: str, today: date) -> tuple[date | None, str]:
    """('tomorrow 7:30') -> (tomorrow's date, '7:30'); no day word -> (None, words)."""
    first, _, rest = words.partition(" ")
    if first in ("today", "tonight"):
        return today, rest
    if first == "tomorrow":
        return today + timedelta(days=1), rest
    wanted = next((i for i, w in enumerate(_WEEKDAYS) if first in (w, w[:3])), None)
    if wanted is not None:
        ahead = (wanted - today.weekday()) % 7 or 7  # "monday" on a Monday means next week
        return today + timedelta(days=ahead), rest
    return None, words


def _clock_time(clock: str, words: str) -> time:
    clock = clock.removeprefix("at ").strip()
    match = _CLOCK.match(clock.replace(" o'clock", ""))
    if not match:
        raise ValueError(f"cannot read {words!r} as a time (try '18:00', '6 pm' or '2025-06-02 18:00')")
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), (match.group(3) or "").replace(".", "")
    if half:
        if not 1 <= hour <= 12:
            raise ValueError(f"{words!r}: {hour} {half} is not a time")
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{words!r} is not a time of day")
    return time(hour, minute)


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    """Attach tz to a naive time; a wall time skipped by DST comes out as the real instant after it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(timezone.utc).astimezone(moment.tzinfo)
