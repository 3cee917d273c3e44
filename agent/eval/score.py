"""Scoring one case: the calls the model made against the calls the case expects.

A case succeeds when every expected call was made (valid, with matching arguments; any
order), and no other tool was called except those in `allow`. An invalid call that the model
corrected within the turn does not fail the case (the person got the right outcome); it does
count against tool-call validity. A `none` case succeeds only when the model attempted no call.

Arguments compare by meaning where the tool gives one: a device names the same devices as the
home resolves them ("kitchen lights" = "kitchen light" when that is the only one), a timer's
duration the same length, an expression the same value; text compares without case and
surrounding space. `match: exact` also forbids arguments the case does not name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from agent.eval.cases import CallSpec, Case, Matcher


@dataclass(frozen=True)
class ObservedCall:
    """A tool call the model wrote, as the turn judged it (from the audit log)."""

    name: str  # "?" when the call could not be parsed
    arguments: dict
    valid: bool  # parsed, a known tool, arguments fit its schema
    outcome: str  # ok | error | denied | invalid | crashed
    detail: str = ""

    def given(self) -> dict:
        """The arguments the model actually wrote (validation fills the rest with None)."""
        return {k: v for k, v in self.arguments.items() if v is not None}

    def text(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.given().items())
        return f"{self.name}({args})" + ("" if self.valid else " [invalid]")


@dataclass(frozen=True)
class Verdict:
    success: bool
    reason: str = ""  # why not, for the failure table
    wrong_tool: bool = False  # a tool other than the expected (or allowed) ones was called


Equivalence = Callable[[Any, Any], bool]


@dataclass
class Comparer:
    """How argument values compare: by meaning for the arguments listed, else as text."""

    by_argument: dict[tuple[str, str], Equivalence] = field(default_factory=dict)

    def same(self, tool: str, arg: str, expected: Any, got: Any) -> bool:
        if isinstance(expected, Matcher):
            return _matches(expected, got, lambda e, g: self.same(tool, arg, e, g))
        if _plain_equal(expected, got):
            return True
        rule = self.by_argument.get((tool, arg)) or self.by_argument.get(("*", arg))
        if rule is None or expected is None or got is None:
            return False
        try:
            return bool(rule(expected, got))
        except Exception:  # a value the rule cannot read (a malformed duration) is a mismatch
            return False


def _norm(text: str) -> str:
    return " ".join(str(text).casefold().split()).strip(" .!?")


def _plain_equal(expected: Any, got: Any) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got or (isinstance(got, str) and _norm(got) == str(expected).lower())
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            return math.isclose(float(expected), float(got), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, str) and got is not None and not isinstance(got, (dict, list)):
        return _norm(expected) == _norm(str(got))
    return expected == got


def _matches(m: Matcher, got: Any, same: Callable[[Any, Any], bool]) -> bool:
    if m.one_of is not None:
        return any(same(option, got) for option in m.one_of)
    if got is None:
        return False
    if m.contains is not None:
        wanted = [m.contains] if isinstance(m.contains, str) else m.contains
        return all(_norm(w) in _norm(str(got)) for w in wanted)
    return re.search(m.regex, str(got), re.IGNORECASE) is not None


def call_mismatch(spec: CallSpec, call: ObservedCall, comparer: Comparer) -> str | None:
    """Why `call` is not the expected call (None when it is)."""
    if call.name != spec.tool:
        return f"called {call.name}, expected {spec.tool}"
    if not call.valid:
        return f"invalid call: {call.detail or 'did not fit the schema'}"
    given = call.given()
    for arg, expected in spec.args.items():
        got = given.get(arg)
        if not comparer.same(spec.tool, arg, expected, got):
            shown = expected.model_dump(exclude_none=True) if isinstance(expected, Matcher) else expected
            return f"{arg}={got!r}, expected {shown!r}"
    if spec.match == "exact":
        extra = sorted(set(given) - set(spec.args))
        if extra:
            return f"unexpected argument {extra[0]}={given[extra[0]]!r}"
    return None


def judge(case: Case, calls: list[ObservedCall], comparer: Comparer | None = None) -> Verdict:
    """The verdict on one case, given every call the model attempted in its turn."""
    comparer = comparer or Comparer()
    expect = case.expect
    allowed = set(expect.allow)
    if expect.none:
        attempted = [c for c in calls if c.name not in allowed]
        if attempted:
            return Verdict(False, f"called {attempted[0].text()} where no tool was needed", wrong_tool=False)
        return Verdict(True)
    wanted = expect.expected_calls()
    names = {s.tool for s in wanted}
    stray = [c for c in calls if c.name not in names and c.name not in allowed]
    free = [c for c in calls if c.name in names]
    missing: list[str] = []
    for spec in wanted:
        best = None
        for call in free:
            why = call_mismatch(spec, call, comparer)
            if why is None:
                free.remove(call)
                best = None
                break
            best = best or why
        else:
            missing.append(best or f"no call to {spec.tool}")
    wrong = any(c.name != "?" for c in stray)
    if missing:
        reason = missing[0]
        if reason.startswith("no call") and stray:
            reason = f"called {stray[0].text()}, expected {wanted[0].tool}"
        return Verdict(False, reason, wrong_tool=wrong)
    if stray:
        return Verdict(False, f"also called {stray[0].text()}", wrong_tool=wrong)
    return Verdict(True)


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 or n successes the bound is exactly 0 or 1; floating point would leave 1e-16 off
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def home_comparer(home: Any = None, now: Callable[[], datetime] | None = None) -> Comparer:
    """The comparer for this repo's tools: devices by the home's names, times by their value."""
    rules: dict[tuple[str, str], Equivalence] = {}
    if home is not None:
        def same_devices(expected: str, got: str) -> bool:
            names = lambda text: {d.name for d in home.registry.find(str(text)).devices}
            return names(expected) == names(got)

        rules[("*", "device")] = same_devices

    from agent.schedule.timewords import parse_duration, parse_when
    from agent.bundled import core_tool_module

    evaluate = core_tool_module("arithmetic").evaluate

    rules[("set_timer", "duration")] = lambda e, g: parse_duration(str(e)) == parse_duration(str(g))
    rules[("calculate", "expression")] = lambda e, g: evaluate(str(e)) == evaluate(str(g))
    if now is not None:
        rules[("set_reminder", "at")] = lambda e, g: _same_moment(parse_when, str(e), str(g), now())
        rules[("schedule_prompt", "at")] = rules[("set_reminder", "at")]
    return Comparer(rules)


def _same_moment(parse_when: Any, expected: str, got: str, now: datetime) -> bool:
    return parse_when(expected, now, now.tzinfo) == parse_when(got, now, now.tzinfo)
