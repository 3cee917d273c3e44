"""Triggers over a simulated clock: DST changes in both directions, crontab weekdays, time words.

The timeline is walked the way apscheduler's loop walks it (Job._get_run_times): at each
wake-up, every fire time up to now, each computed from the previous one with the trigger's
own get_next_fire_time. No real time passes.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from agent.schedule.timewords import parse_duration, parse_when
from agent.schedule.triggers import at_trigger, cron_trigger, crontab_weekdays, describe, every_trigger, fire_times

UTC = timezone.utc
# (zone, spring-forward day, fall-back day) in 2025
DST_DAYS = [
    ("America/New_York", (2025, 3, 9), (2025, 11, 2)),  # 02:00 -> 03:00; 02:00 -> 01:00
    ("Europe/Berlin", (2025, 3, 30), (2025, 10, 26)),  # 02:00 -> 03:00; 03:00 -> 02:00
]
CASES = [(zone, day, season) for zone, spring, autumn in DST_DAYS for day, season in ((spring, "spring"), (autumn, "autumn"))]
IDS = [f"{zone.split('/')[1]}-{season}" for zone, _, season in CASES]


def simulate(trigger, start: datetime, end: datetime, wake_every: timedelta) -> list[datetime]:
    """Fire times (in UTC) produced while the clock runs from start to end, waking every `wake_every`.

    In UTC because Python compares and subtracts two datetimes of the same zone by wall time.
    """
    fired, now = [], start
    next_run = trigger.get_next_fire_time(None, start)
    while now <= end:
        while next_run is not None and next_run <= now:
            fired.append(next_run.astimezone(UTC))
            next_run = trigger.get_next_fire_time(next_run, now)
        now += wake_every
    return fired


def window(zone: str, day: tuple) -> tuple[datetime, datetime]:
    """Two local days either side of the change, in UTC."""
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=tz) - timedelta(days=2)
    return start.astimezone(UTC), (start + timedelta(days=5)).astimezone(UTC) - timedelta(seconds=1)


def local_dates(fired: list[datetime], zone: str) -> Counter:
    return Counter(f.astimezone(ZoneInfo(zone)).date() for f in fired)


# Wake-ups every minute, and every 3 hours (a loop that only looks now and then must see the same runs).
WAKE = [timedelta(minutes=1), timedelta(hours=3)]


@pytest.mark.parametrize("wake", WAKE, ids=["1min", "3h"])
@pytest.mark.parametrize("zone, day, season", CASES, ids=IDS)
@pytest.mark.parametrize("clock", ["01:30", "02:00", "02:30", "03:00", "07:00"])
def test_a_daily_job_runs_exactly_once_each_day_across_the_change(zone, day, season, clock, wake):
    hour, minute = clock.split(":")
    trigger = cron_trigger(f"{int(minute)} {int(hour)} * * *", ZoneInfo(zone))
    fired = simulate(trigger, *window(zone, day), wake)
    days = local_dates(fired, zone)
    assert len(fired) == 5 and set(days.values()) == {1}, [f.astimezone(ZoneInfo(zone)).isoformat() for f in fired]
    assert fired == sorted(set(fired))  # distinct real instants, in order


@pytest.mark.parametrize("zone, day, season", CASES, ids=IDS)
def test_a_time_skipped_in_spring_runs_just_after_the_change(zone, day, season):
    tz = ZoneInfo(zone)
    fired = simulate(cron_trigger("30 2 * * *", tz), *window(zone, day), timedelta(minutes=1))
    local = [f.astimezone(tz) for f in fired]
    on_the_day = [f for f in local if f.date() == datetime(*day).date()]
    if season == "spring":  # 02:30 does not exist that night: it runs at 03:30, one hour after 01:30
        assert [(f.hour, f.minute) for f in on_the_day] == [(3, 30)]
    else:
        assert [(f.hour, f.minute) for f in on_the_day] == [(2, 30)] and on_the_day[0].fold == 0


@pytest.mark.parametrize("zone, day, season", CASES, ids=IDS)
def test_an_hourly_job_runs_once_per_real_hour(zone, day, season):
    start, end = window(zone, day)
    fired = simulate(cron_trigger("0 * * * *", ZoneInfo(zone)), start, end, timedelta(minutes=1))
    hours = (end - start).total_seconds() // 3600 + 1
    assert len(fired) == hours  # 119 in spring, 121 in autumn: the lost or repeated hour counts
    assert {b - a for a, b in zip(fired, fired[1:])} == {timedelta(hours=1)}


@pytest.mark.parametrize("zone, day, season", CASES, ids=IDS)
def test_an_interval_counts_real_time(zone, day, season):
    start, end = window(zone, day)
    fired = simulate(every_trigger("30m", ZoneInfo(zone), start=start), start, end, timedelta(minutes=7))
    assert {b - a for a, b in zip(fired, fired[1:])} == {timedelta(minutes=30)}
    assert len(fired) == (end - start).total_seconds() // 1800 + 1


@pytest.mark.parametrize("zone, day, season", CASES, ids=IDS)
def test_a_sunday_job_runs_on_the_change_sunday(zone, day, season):
    # Both zones change on a Sunday: a weekly job in the changed hour must neither double nor vanish.
    fired = simulate(cron_trigger("30 2 * * 0", ZoneInfo(zone)), *window(zone, day), timedelta(minutes=1))
    assert [f.astimezone(ZoneInfo(zone)).date() for f in fired] == [datetime(*day).date()]


def test_fire_times_walks_what_coalescing_merges():
    tz = ZoneInfo("Europe/Berlin")
    trigger = cron_trigger("0 * * * *", tz)
    first = datetime(2025, 6, 2, 8, tzinfo=tz)
    assert [f.hour for f in fire_times(trigger, first, first + timedelta(hours=3))] == [8, 9, 10]


# -- crontab dialect ---------------------------------------------------------------------------


@pytest.mark.parametrize("crontab, names", [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("0,6", "sat,sun"),
    ("*/2", "tue,thu,sat,sun"), ("fri-mon", "mon,fri,sat,sun"), ("mon-fri", "mon,tue,wed,thu,fri"), ("*", "*"),
])
def test_weekday_numbers_follow_crontab_not_apscheduler3(crontab, names):
    assert crontab_weekdays(crontab) == names


def test_weekdays_line_fires_monday_to_friday():
    tz = ZoneInfo("UTC")
    monday = datetime(2025, 6, 2, tzinfo=tz)
    fired = simulate(cron_trigger("0 7 * * 1-5", tz), monday, monday + timedelta(days=7), timedelta(hours=1))
    assert [f.strftime("%a") for f in fired] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


@pytest.mark.parametrize("line, message", [
    ("0 7 * *", "expected 5 fields"), ("61 * * * *", "61"), ("0 7 * * 9", "bad weekday '9'"),
])
def test_bad_cron_lines_say_what_is_wrong(line, message):
    with pytest.raises(ValueError, match=message):
        cron_trigger(line, ZoneInfo("UTC"))


def test_macros_and_field_mappings():
    tz = ZoneInfo("UTC")
    assert describe(cron_trigger("@daily", tz)) == "cron 0 0 * * * (UTC)"
    assert describe(cron_trigger({"hour": 7, "minute": 15, "day_of_week": "1-5"}, tz)) == "cron 15 7 * * mon,tue,wed,thu,fri (UTC)"
    with pytest.raises(ValueError, match="unknown cron field 'hours'"):
        cron_trigger({"hours": 7}, tz)


# -- time words ---------------------------------------------------------------------------------

NOON = datetime(2025, 6, 2, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # a Monday


@pytest.mark.parametrize("words, expected", [
    ("18:00", "2025-06-02 18:00"), ("6 pm", "2025-06-02 18:00"), ("6:30pm", "2025-06-02 18:30"),
    ("9 am", "2025-06-03 09:00"), ("at 11:00", "2025-06-03 11:00"), ("tomorrow 7:30", "2025-06-03 07:30"),
    ("friday 9am", "2025-06-06 09:00"), ("mon 8:00", "2025-06-09 08:00"), ("in 10 minutes", "2025-06-02 12:10"),
    ("2025-06-04 18:00", "2025-06-04 18:00"), ("2025-06-04T18:00", "2025-06-04 18:00"),
])
def test_moments_as_people_say_them(words, expected):
    assert f"{parse_when(words, NOON):%Y-%m-%d %H:%M}" == expected


def test_a_wall_time_skipped_by_dst_becomes_the_real_time_after_it():
    moment = parse_when("2025-03-30 02:30", NOON)
    assert f"{moment:%H:%M %z}" == "03:30 +0200"


@pytest.mark.parametrize("words, message", [
    ("soon", "cannot read 'soon' as a time"), ("13 pm", "not a time"), ("tomorrow", "needs a time of day"),
])
def test_unreadable_moments(words, message):
    with pytest.raises(ValueError, match=message):
        parse_when(words, NOON)


@pytest.mark.parametrize("words, seconds", [
    ("90", 90), ("90s", 90), ("10 minutes", 600), ("1h30m", 5400), ("half an hour", 1800), ("an hour", 3600),
    ("5:00", 300), ("1:05:00", 3900), ("2 hours, 15 minutes", 8100), (45, 45),
])
def test_durations(words, seconds):
    assert parse_duration(words) == timedelta(seconds=seconds)


@pytest.mark.parametrize("words", ["0", "soon", "10 parsecs", "-5"])
def test_bad_durations(words):
    with pytest.raises(ValueError):
        parse_duration(words)


def test_at_trigger_is_timezone_aware():
    trigger = at_trigger("tomorrow 7:30", ZoneInfo("America/New_York"), NOON)
    assert f"{trigger.run_date:%Y-%m-%d %H:%M %Z}" == "2025-06-03 07:30 EDT"
