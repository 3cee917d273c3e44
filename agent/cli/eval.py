"""`agentd eval [CASES] [--model PATH] [--with-intents] [--compare-constrained] [--json FILE] [--limit N]`.

Runs the case file (default: the bundled agent/eval/data/cases.yaml, home-assistant-style cases on a
sample home) through the real agent turn and prints the figures and the failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
DEFAULT_MAX_TOKENS = 256


def add_parser(sub: Any, common: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add `eval` to agentd's subcommands (`common` holds --home, --config, --model, -v)."""
    parser = sub.add_parser("eval", parents=[common] if common is not None else [],
                            help="run the tool-calling eval and print its figures")
    if common is None:
        parser.add_argument("--home", help="state folder (models are found there)")
        parser.add_argument("--config", help="a YAML file overriding config/default.yaml")
        parser.add_argument("--model", help="a local MLX model folder (overrides model.path)")
    parser.add_argument("cases", nargs="?", help="a case file (default: the bundled agent/eval/data/cases.yaml)")
    parser.add_argument("--with-intents", action="store_true", help="let the fast phrase path answer what it matches (off: the model answers every case)")
    parser.add_argument("--compare-constrained", action="store_true", help="run every case twice, with model.constrained on and off, side by side")
    parser.add_argument("--json", metavar="FILE", help="write the full report (figures and every case) to FILE")
    parser.add_argument("--limit", type=int, metavar="N", help="run N cases, taken in turn from each category (and run in that order)")
    parser.add_argument("--category", action="append", metavar="NAME", help="only cases of this category (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                        help=f"most tokens per model call (default {DEFAULT_MAX_TOKENS}: a tool call or a short reply fits)")
    parser.add_argument("--full-replies", action="store_true", help="let the model finish its reply after a tool ran (slower; not scored)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out `agentd eval`; the exit code (0 when the eval ran, whatever its score)."""
    from agent.eval.cases import CaseFileError

    try:
        return _run(args)
    except CaseFileError as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return EXIT_USAGE


def select(cases: list, limit: int | None, categories: list[str] | None) -> list:
    """The cases to run: of the given categories, and at most `limit`, round-robin over categories."""
    if categories:
        wanted = {c.lower() for c in categories}
        cases = [c for c in cases if c.category.lower() in wanted]
    if limit is None:
        return list(cases)
    limit = min(limit, len(cases))  # a generous limit still runs in turn over the categories
    groups: dict[str, list] = {}
    for case in cases:
        groups.setdefault(case.category, []).append(case)
    chosen: list = []  # in turn from each category, so a run cut short still covers them all
    while len(chosen) < limit:
        for group in groups.values():
            if group and len(chosen) < limit:
                chosen.append(group.pop(0))
    return chosen


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.eval.build import eval_settings, has_constrained_setting, load_home, registry_for, simulated_home
    from agent.eval.cases import DEFAULT_CASES, CaseFileError, check_cases, load_cases
    from agent.config.paths import resolve_home, select_user_config
    from agent.llm.catalog import set_offline_mode
    from agent.config.settings import load_settings

    if args.limit is not None and args.limit < 1:
        raise CaseFileError("--limit must be at least 1")
    path = Path(args.cases) if args.cases else DEFAULT_CASES
    loaded = load_cases(path)
    home_file = load_home(loaded)
    set_offline_mode()
    home = resolve_home(args.home)
    base = load_settings(select_user_config(home, args.config),
                         overrides={"model.path": args.model, "model.max_tokens": args.max_tokens})
    settings = eval_settings(base, home_file, with_intents=args.with_intents, skills=loaded.file.skills)
    sim = simulated_home(settings) if home_file is not None else None
    registries: dict[tuple, Any] = {}

    def registry(skills: tuple) -> Any:
        if skills not in registries:
            registries[skills] = registry_for(settings, home, skills or None)
        return registries[skills]

    problems = check_cases(loaded, registry, sim.name_problem if sim is not None else None)
    if sim is not None:
        problems += [f"{home_file.path}: states.{name}: {why}" for name in home_file.states if (why := sim.name_problem(name))]
    if problems:
        raise CaseFileError("\n".join(problems))
    cases = select(loaded.cases, args.limit, args.category)
    if not cases:
        raise CaseFileError(f"{path}: no case matches --category {', '.join(args.category or [])}")

    if args.compare_constrained:
        if not has_constrained_setting():
            raise CaseFileError("--compare-constrained: this build of agentd has no model.constrained setting")
        variants = [("constrained", True), ("unconstrained", False)]
    else:
        variants = [(_variant_name(settings), None)]
    console = Console(stderr=False)
    meta: dict[str, Any] = {"cases_file": str(path), "home_file": str(loaded.home_path) if loaded.home_path else None,
                            "cases": len(cases), "of_cases": len(loaded.cases), "with_intents": args.with_intents,
                            "max_tokens": args.max_tokens, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    variant_settings = {name: eval_settings(base, home_file, with_intents=args.with_intents, skills=loaded.file.skills,
                                            constrained=constrained) for name, constrained in variants}
    meta["settings"] = {name: _figures_of(s) for name, s in variant_settings.items()}
    with tempfile.TemporaryDirectory(prefix="agentd-eval-") as work:
        results, meta["model"], meta["interrupted"] = _run_all(variant_settings, home, loaded, home_file, cases, Path(work),
                                                               console, full_replies=args.full_replies)
    from agent.eval.report import failures_table, figures_table, report_dict, summarize

    summaries = [summarize(name, results[name]) for name in variant_settings]
    done = len(results[next(iter(variant_settings))])
    note = f", interrupted after {done}" if meta["interrupted"] else ""
    console.print(figures_table(summaries, title=f"agentd eval: {meta['model']}, {len(cases)} of {len(loaded.cases)} cases{note}"))
    all_results = [r for name in variant_settings for r in results[name]]
    if any(not r.verdict.success for r in all_results):
        console.print(failures_table(all_results))
    if args.json:
        Path(args.json).write_text(json.dumps(report_dict(summaries, results, meta), indent=2, ensure_ascii=False, default=str) + "\n",
                                   encoding="utf-8")
        console.print(f"report written to {args.json}")
    return 130 if meta["interrupted"] else 0


def _figures_of(settings: Any) -> dict:
    """The settings that shape the figures, for the report."""
    m, a = settings.model, settings.agent
    return {"constrained": getattr(m, "constrained", None), "thinking": m.thinking, "temperature": m.temperature,
            "top_p": m.top_p, "top_k": m.top_k, "presence_penalty": m.presence_penalty, "seed": m.seed,
            "max_tokens": m.max_tokens, "max_model_calls": a.max_model_calls, "turn_timeout_s": a.turn_timeout_s}


def _variant_name(settings: Any) -> str:
    constrained = getattr(settings.model, "constrained", None)
    return "result" if constrained is None else ("constrained" if constrained else "unconstrained")


def _run_all(variant_settings: dict[str, Any], home: Path, loaded: Any, home_file: Any, cases: list, work: Path,
             console: Any, *, full_replies: bool) -> tuple[dict[str, list], str, bool]:
    """Load the model once, prefill its prompt prefix, then run each case under every variant.

    The variants share one engine and differ only in their settings, applied with
    `agent.app.configure` as a reload applies them; each case runs under all variants in turn,
    so an interrupted run still compares them on the same cases. Ctrl-C stops the run and
    keeps what is done.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from agent.daemon.assembly import configure
    from agent.eval.build import build_agent_app, make_runner, simulated_home
    from agent.eval.runner import eval_schedule

    first = next(iter(variant_settings.values()))
    sim = simulated_home(first) if home_file is not None else None
    console.print("[dim]loading the model and prefilling its system prompt and tools (once)...[/dim]")
    app = build_agent_app(first, home, sim)
    model = app.engine.name + (" (demo model)" if app.is_demo else "")
    results: dict[str, list] = {name: [] for name in variant_settings}
    interrupted = False
    try:
        app.warm_up()
        app.engine.run_on_thread(lambda: None)  # wait for it: latency is per turn, as in a warm daemon
        runners = {}
        for name, settings in variant_settings.items():
            (work / name).mkdir()
            runners[name] = make_runner(app.agent, settings, home, loaded, home_file, sim, work / name, variant=name,
                                        full_replies=full_replies)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[score]}"),
                   TimeElapsedColumn(), TimeRemainingColumn()]

        async def run(progress: Any, task: Any) -> None:
            for case in cases:
                for name, settings in variant_settings.items():
                    configure(app.agent, settings)
                    result = await runners[name].run_case(case)
                    results[name].append(result)
                    score = "  ".join(f"{n}: {sum(r.verdict.success for r in rs)}/{len(rs)}" for n, rs in results.items())
                    progress.update(task, advance=1, score=score)

        with Progress(*columns, console=console) as progress, eval_schedule(work, first, app.agent):
            task = progress.add_task(model, total=len(cases) * len(variant_settings), score="")
            try:
                asyncio.run(run(progress, task))
            except KeyboardInterrupt:
                interrupted = True
    finally:
        app.close()
    shortest = min(len(rs) for rs in results.values())  # a pair cut in half is left out
    return {name: rs[:shortest] for name, rs in results.items()}, model, interrupted
