"""Schedule tools: reminders, timers and recurring prompts that survive restarts; list and cancel them.

They reach the daemon's running schedule as `ctx.schedule`, handed in by the executor;
outside the daemon they say the schedule is not running.
"""

from __future__ import annotations

from datetime import datetime

from agent.tools import ToolContext, ToolError, tool
from .clock import describe, user_zone

MAX_TEXT = 500


@tool(risk="write")
async def set_reminder(ctx: ToolContext, text: str, at: str) -> str:
    """Remind the user of something at a given time. The reminder is kept even if agentd restarts.

    Args:
        text: What to remind them of, e.g. "call mum".
        at: When, as the user said it: "18:00", "6 pm", "tomorrow 7:30", "friday 9am",
            "in 20 minutes", or a date and time such as "2025-06-02 18:00".
    """
    from agent.schedule.timewords import parse_when

    text = _text(text, "what to remind")
    now = ctx.clock.now()
    when = _read(parse_when, at, now, user_zone(ctx))
    if when <= now:
        raise ToolError(f"{describe(when)} has already passed; give a time in the future")
    info = _done(_scheduler(ctx).add_reminder, text, when)
    return f"Reminder {info.id} set for {describe(when)}: {text}"


@tool(risk="write")
async def set_timer(ctx: ToolContext, duration: str, label: str = "") -> str:
    """Start a timer that goes off after a duration.

    Args:
        duration: How long, e.g. "10 minutes", "1h30m", "90 seconds".
        label: What the timer is for, e.g. "pasta". Leave empty if the user did not say.
    """
    from agent.schedule.timewords import parse_duration

    length = _read(parse_duration, duration)
    info = _done(_scheduler(ctx).add_timer, length, " ".join(label.split())[:MAX_TEXT])
    ends = ctx.clock.now() + length
    return f"Timer {info.id} set for {info.when[3:]}; it goes off at {ends:%H:%M:%S}."


@tool(risk="write")
async def schedule_prompt(ctx: ToolContext, prompt: str, cron: str = "", every: str = "", at: str = "") -> str:
    """Schedule a request for you to carry out later on your own: give one of cron, every or at.

    It runs with nobody to ask, so actions that need the user's confirmation are refused then.

    Args:
        prompt: The request to carry out each time, e.g. "Tell me the weather forecast".
        cron: A crontab line in the user's time zone, e.g. "0 7 * * 1-5" for 07:00 on weekdays.
        every: A repeat interval, e.g. "30 minutes" or "2h".
        at: One time only, e.g. "tomorrow 7:30" or "2025-06-02 18:00".
    """
    from agent.schedule.triggers import at_trigger, cron_trigger, every_trigger

    prompt = _text(prompt, "the request")
    given = {k: v.strip() for k, v in (("cron", cron), ("every", every), ("at", at)) if v and v.strip()}
    if len(given) != 1:
        raise ToolError(f"give exactly one of cron, every or at (got {', '.join(given) or 'none'})")
    (kind, value), = given.items()
    zone = user_zone(ctx) or ctx.clock.now().tzinfo
    build = {"cron": lambda: cron_trigger(value, zone), "every": lambda: every_trigger(value, zone),
             "at": lambda: at_trigger(value, zone, ctx.clock.now())}[kind]
    trigger = _read(build)
    info = _done(_scheduler(ctx).add_prompt, prompt, trigger, f"{kind} {value}")
    if info.next_run is None:
        raise ToolError(f"{kind} {value!r} never happens")
    return f"Scheduled {info.id} ({kind} {value}); first run {describe(_local(info.next_run, ctx))}: {prompt}"


@tool
async def list_schedules(ctx: ToolContext) -> str:
    """List the reminders, timers, scheduled requests and automations, with their next run."""
    jobs = _scheduler(ctx).jobs()
    if not jobs:
        return "Nothing is scheduled."
    lines = []
    for job in jobs:
        nxt = describe(_local(job.next_run, ctx)) if job.next_run else job.state
        source = " (from the config file)" if job.source == "config" else ""
        lines.append(f"{job.id}: {job.kind} \"{job.label}\", {job.when}; next: {nxt}{source}")
    return "\n".join(lines)


@tool(risk="write")
async def cancel_schedule(ctx: ToolContext, id: str) -> str:
    """Cancel a reminder, timer or scheduled request by its id (list_schedules shows the ids).

    Args:
        id: The id, e.g. "reminder-3f2a1c".
    """
    info = _done(_scheduler(ctx).remove, id.strip(), agent_only=True)
    return f"Cancelled {info.id}: {info.kind} \"{info.label}\"."


def _done(operation, *args, **kwargs):
    """A schedule operation; what it cannot do (no such job, a full disk) goes to the model as text."""
    from agent.schedule import ScheduleError

    try:
        return operation(*args, **kwargs)
    except ScheduleError as exc:
        raise ToolError(str(exc)) from None


def _scheduler(ctx: ToolContext):
    """The schedule handed in; none, or one not (yet, or any more) running, is said to the model."""
    schedule = ctx.schedule
    if schedule is None or not schedule.running:
        raise ToolError("the schedule is not running (it runs inside `agentd run`)")
    return schedule


def _read(parse, *args):
    """Parse what the model wrote; its mistakes go back to it as a ToolError."""
    try:
        return parse(*args)
    except ValueError as exc:
        raise ToolError(str(exc)) from None


def _text(text: str, what: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise ToolError(f"{what} is empty")
    if len(text) > MAX_TEXT:
        raise ToolError(f"{what} is too long ({len(text)} characters; at most {MAX_TEXT})")
    return text


def _local(moment: datetime, ctx: ToolContext) -> datetime:
    zone = user_zone(ctx) or ctx.clock.now().tzinfo
    return moment.astimezone(zone)
