"""apscheduler triggers from what people write: a crontab line, `every: 30m`, `at: 18:00`.

Two things differ from apscheduler 3.x on purpose:
- weekday numbers follow crontab (0 or 7 = Sunday), not apscheduler 3's 0 = Monday;
- a cron job at a fixed hour runs once when autumn's clock change repeats that hour
  (`DstSafeCronTrigger`), as cron does; jobs on every hour still run in both copies of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.schedule.timewords import parse_duration, parse_when

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 = Sunday
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_EXTRA_FIELDS = ("second", "week", "year")


class DstSafeCronTrigger(CronTrigger):  # pickled by name into jobs.db: keep the name
    """CronTrigger that skips the second copy of a wall-clock time repeated by a DST change.

    apscheduler 3.11 fires a daily 01:30 job twice on the night New York turns its clocks back.
    Skipped copies only happen for jobs with a fixed hour; an hourly job fires in both hours,
    which are different real hours. Times that do not exist (spring) fire at the same moment
    after the change, so no run is lost.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """The next fire time, never the repeated copy of a fixed-hour time."""
        moment = super().get_next_fire_time(previous_fire_time, now)
        every_hour = str(self.fields[CronTrigger.FIELD_NAMES.index("hour")]) == "*"
        while moment is not None and not every_hour and _second_copy(moment, self.timezone):
            moment = super().get_next_fire_time(moment, moment)
        # Through UTC so a skipped 02:30 reads as the 03:30 it really is, and fold is right.
        return moment and moment.astimezone(timezone.utc).astimezone(self.timezone)


def _second_copy(moment: datetime, tz: tzinfo) -> bool:
    """Whether this instant is the later of two that show the same wall time in tz."""
    return moment.astimezone(timezone.utc).astimezone(tz).fold == 1


def cron_trigger(cron: str | dict[str, Any], tz: tzinfo) -> DstSafeCronTrigger:
    """A trigger from a crontab line ('0 7 * * 1-5', '@daily') or a mapping of cron fields."""
    if isinstance(cron, str):
        line = _MACROS.get(cron.strip().lower(), cron)
        values = line.split()
        if len(values) != 5:
            raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(values)} in {cron!r}")
        fields = dict(zip(_CRON_FIELDS, values))
    elif isinstance(cron, dict):
        unknown = sorted(set(cron) - set(_CRON_FIELDS) - set(_EXTRA_FIELDS))
        if unknown:
            raise ValueError(f"unknown cron field {unknown[0]!r} (known: {', '.join(_CRON_FIELDS + _EXTRA_FIELDS)})")
        fields = {k: str(v) for k, v in cron.items()}
    else:
        raise ValueError(f"expected a crontab line or a mapping of cron fields, got {cron!r}")
    if "day_of_week" in fields:
        fields["day_of_week"] = crontab_weekdays(fields["day_of_week"])
    return DstSafeCronTrigger(timezone=tz, **fields)


def crontab_weekdays(text: str) -> str:
    """Crontab weekdays ('1-5', '0,6', '*/2', 'mon-fri') as apscheduler 3 reads them (names)."""
    text = text.strip().lower()
    if text == "*":
        return text
    days: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            first, last = (_day_number(x) for x in base.split("-", 1))
        else:
            first = last = _day_number(base)
        if last < first:
            last += 7  # 'fri-mon' wraps round the week
        days.update(d % 7 for d in range(first, last + 1, int(step) if step else 1))
    return ",".join(_DAY_NAMES[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def _day_number(word: str) -> int:
    word = word.strip()
    if word.isdigit() and int(word) <= 7:
        return int(word) % 7
    if word[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(word[:3])
    raise ValueError(f"bad weekday {word!r} (use 0-7, 0 and 7 being Sunday, or mon..sun)")


def every_trigger(every: str | int | float, tz: tzinfo, start: datetime | None = None) -> IntervalTrigger:
    """A trigger every so often ('30m', '2 hours', 90), counted in real elapsed time."""
    interval = parse_duration(every)
    return IntervalTrigger(seconds=interval.total_seconds(), start_date=start, timezone=tz)


def at_trigger(at: str | datetime, tz: tzinfo, now: datetime) -> DateTrigger:
    """A one-off trigger at a moment ('2025-06-02 18:00', 'tomorrow 7:30')."""
    return DateTrigger(run_date=parse_when(at, now, tz), timezone=tz)


def describe(trigger: BaseTrigger) -> str:
    """A short human description for `agentd jobs`."""
    if isinstance(trigger, DateTrigger):
        return f"once at {trigger.run_date:%Y-%m-%d %H:%M %Z}"
    if isinstance(trigger, IntervalTrigger):
        return f"every {_short(trigger.interval)}"
    if isinstance(trigger, CronTrigger):
        names = ("minute", "hour", "day", "month", "day_of_week")
        fields = {f.name: str(f) for f in trigger.fields}
        return f"cron {' '.join(fields[n] for n in names)} ({trigger.timezone})"
    return str(trigger)


def _short(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def fire_times(trigger: BaseTrigger, first: datetime, before: datetime, limit: int = 1000) -> list[datetime]:
    """The fire times from `first` up to (not including) `before`, as the scheduler walks them."""
    times, moment = [], first
    while moment is not None and moment < before and len(times) < limit:
        times.append(moment)
        moment = trigger.get_next_fire_time(moment, before)
    return times
