"""The eval's figures, as a rich table (variants side by side), a failure table and JSON.

    task success          cases whose outcome was right, with a 95% Wilson interval
    tool-call validity    calls that parsed, named a real tool and fit its schema / all calls
    irrelevance accuracy  `expect: none` cases where the model called no tool
    wrong-tool rate       cases expecting a tool where the model called some other tool
    coerced               calls that went to a tool other than the one the model started to
                          name (the grammar's mask chose it) / valid calls; the goal is 0
    latency               median and p95 of the turn's time to its outcome
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agent.eval.runner import CaseResult
from agent.eval.score import wilson


@dataclass
class Summary:
    """The figures for one variant (one model, one decoding setting)."""

    variant: str
    cases: int
    successes: int
    interval: tuple[float, float]
    calls: int
    valid_calls: int
    irrelevance_cases: int
    irrelevance_right: int
    tool_cases: int
    wrong_tool_cases: int
    latency_median_s: float
    latency_p95_s: float
    coerced_calls: int = 0
    by_category: dict[str, tuple[int, int]] = field(default_factory=dict)  # category -> (right, total)

    @property
    def success_rate(self) -> float:
        return self.successes / self.cases if self.cases else 0.0

    @property
    def validity(self) -> float | None:
        return self.valid_calls / self.calls if self.calls else None

    @property
    def coerced_rate(self) -> float | None:
        return self.coerced_calls / self.valid_calls if self.valid_calls else None

    @property
    def irrelevance_accuracy(self) -> float | None:
        return self.irrelevance_right / self.irrelevance_cases if self.irrelevance_cases else None

    @property
    def wrong_tool_rate(self) -> float | None:
        return self.wrong_tool_cases / self.tool_cases if self.tool_cases else None

    def to_dict(self) -> dict:
        return {
            "variant": self.variant, "cases": self.cases, "successes": self.successes,
            "success_rate": round(self.success_rate, 4), "success_interval_95": [round(x, 4) for x in self.interval],
            "calls": self.calls, "valid_calls": self.valid_calls, "validity": _round(self.validity),
            "irrelevance_cases": self.irrelevance_cases, "irrelevance_accuracy": _round(self.irrelevance_accuracy),
            "tool_cases": self.tool_cases, "wrong_tool_cases": self.wrong_tool_cases, "wrong_tool_rate": _round(self.wrong_tool_rate),
            "coerced_calls": self.coerced_calls, "coerced_rate": _round(self.coerced_rate),
            "latency_median_s": round(self.latency_median_s, 4), "latency_p95_s": round(self.latency_p95_s, 4),
            "by_category": {k: {"right": r, "total": t} for k, (r, t) in sorted(self.by_category.items())},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(variant: str, results: list[CaseResult]) -> Summary:
    """The figures for one variant's results."""
    calls = [c for r in results for c in r.calls]
    irrelevant = [r for r in results if r.case.expect.none]
    tool_cases = [r for r in results if not r.case.expect.none]
    by_category: dict[str, tuple[int, int]] = {}
    for r in results:
        right, total = by_category.get(r.case.category, (0, 0))
        by_category[r.case.category] = (right + r.verdict.success, total + 1)
    successes = sum(r.verdict.success for r in results)
    latencies = [r.latency_s for r in results]
    return Summary(
        variant=variant, cases=len(results), successes=successes, interval=wilson(successes, len(results)),
        calls=len(calls), valid_calls=sum(c.valid for c in calls),
        irrelevance_cases=len(irrelevant), irrelevance_right=sum(r.verdict.success for r in irrelevant),
        tool_cases=len(tool_cases), wrong_tool_cases=sum(r.verdict.wrong_tool for r in tool_cases),
        latency_median_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
        coerced_calls=sum(r.coerced_calls for r in results),
        by_category=by_category,
    )


def report_dict(summaries: list[Summary], results: dict[str, list[CaseResult]], meta: dict[str, Any]) -> dict:
    """The full report for --json: what ran, the figures, and every case."""
    return {
        **meta,
        "variants": {s.variant: {"summary": s.to_dict(), "results": [r.to_dict() for r in results[s.variant]]} for s in summaries},
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def figures_table(summaries: list[Summary], title: str = "agentd eval") -> Any:
    """The headline figures, one column per variant."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    for s in summaries:
        table.add_column(s.variant, justify="right")
    rows = [
        ("task success", lambda s: f"{_pct(s.success_rate)} ({s.successes}/{s.cases})"),
        ("  95% interval (Wilson)", lambda s: f"{_pct(s.interval[0])} - {_pct(s.interval[1])}"),
        ("tool-call validity", lambda s: f"{_pct(s.validity)} ({s.valid_calls}/{s.calls})"),
        ("irrelevance accuracy", lambda s: f"{_pct(s.irrelevance_accuracy)} ({s.irrelevance_right}/{s.irrelevance_cases})"),
        ("wrong-tool rate", lambda s: f"{_pct(s.wrong_tool_rate)} ({s.wrong_tool_cases}/{s.tool_cases})"),
        ("coerced (goal 0)", lambda s: f"{_pct(s.coerced_rate)} ({s.coerced_calls}/{s.valid_calls})"),
        ("latency median", lambda s: f"{s.latency_median_s:.2f} s"),
        ("latency p95", lambda s: f"{s.latency_p95_s:.2f} s"),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(s) for s in summaries))
    categories = sorted({c for s in summaries for c in s.by_category})
    for i, category in enumerate(categories):
        cells = []
        for s in summaries:
            right, total = s.by_category.get(category, (0, 0))
            cells.append(f"{right}/{total}" if total else "-")
        table.add_row(f"{category}", *cells, end_section=False, style="dim" if i % 2 else None)
    return table


def failures_table(results: list[CaseResult], limit: int = 60) -> Any:
    """The failed cases: what was said, what was expected, what happened."""
    from rich.table import Table

    failed = [r for r in results if not r.verdict.success]
    table = Table(title=f"failures ({len(failed)})", title_justify="left", show_lines=False)
    for column in ("variant", "case", "said", "expected", "why"):
        table.add_column(column, overflow="fold")
    for r in failed[:limit]:
        table.add_row(r.variant, r.case.id, r.case.say, expected_text(r.case), r.verdict.reason or r.stopped_by)
    if len(failed) > limit:
        table.caption = f"... and {len(failed) - limit} more (--json has them all)"
    return table


def expected_text(case: Any) -> str:
    """An expectation in one short line: `set_device(device='kitchen light', state='on')`."""
    if case.expect.none:
        return "no tool"
    parts = []
    for spec in case.expect.expected_calls():
        args = ", ".join(f"{k}={v.model_dump(exclude_none=True) if hasattr(v, 'model_dump') else v!r}" for k, v in spec.args.items())
        parts.append(f"{spec.tool}({args})")
    return " + ".join(parts)
