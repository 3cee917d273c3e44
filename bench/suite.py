"""`agentd bench` / `make bench`: every benchmark that fits this machine, as one table.

Each benchmark module's `main(argv)` returns its figures; `LINES` says which of them a person
reads, next to its goal. Model benchmarks run on the configured Qwen3.5 when one is installed,
else on the tests' tiny Qwen3.5 with the real 248k vocabulary (`--tiny` forces it; `--model`
picks a folder). The figures are ratios measured side by side in one run wherever a goal is
relative, because absolute times on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Line:
    """One row of the table: a figure from a benchmark's result, its goal, and whether it is met."""

    label: str
    figure: Callable[[dict], str]
    goal: str = ""
    met: Callable[[dict], bool] | None = None


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    argv: Callable[[argparse.Namespace], list[str]]
    lines: tuple[Line, ...]


def _model(args: argparse.Namespace) -> list[str]:
    return ["--model", args.model] if args.model else (["--tiny"] if args.tiny else [])


BENCHES = (
    Bench("prefix_cache", "bench.prefix_cache", lambda a: [*_model(a), "--repeats", "3"], (
        Line("prefix cache: TTFT cold -> cached",
             lambda r: f"{r['ttft_cold_s']:.3f} s -> {r['ttft_cached_s']:.3f} s = {r['speedup']}x ({r['prompt_tokens']} tok)",
             ">= 20x", lambda r: r["speedup"] >= 20),
    )),
    Bench("conversation", "bench.conversation", lambda a: [*_model(a), "--repeats", "5"], (
        Line("conversation cache: tokens prefilled per call after the first, 10 turns with 3 tool turns",
             lambda r: f"{r['prefilled_per_call_on'][1:]} vs {r['prefilled_per_call_off'][1:]} without; "
                       f"new tokens {r['new_tokens_per_call'][1:]}",
             "the new ones (+ a turn header)", lambda r: r["max_over_new_on"] <= r["turn_header_tokens"]),
        Line("conversation cache: TTFT turn 10 vs turn 1",
             lambda r: f"{r['turn10_vs_turn1_on']}x ({r['ttft_turn1_on_s']} -> {r['ttft_turn10_on_s']} s); "
                       f"{r['turn10_vs_turn1_off']}x without; first turn after a tool turn {r['after_tool_turn_vs_turn1_on']}x",
             "<= 1.3x", lambda r: r["turn10_vs_turn1_on"] <= 1.3),
        Line("conversation cache: 2nd model call of a tool turn, tokens prefilled",
             lambda r: f"{[on for _, on, _, _ in r['tool_turn_second_calls']]} vs "
                       f"{[off for _, _, off, _ in r['tool_turn_second_calls']]} without; agent on the "
                       f"{r['agent_tool_turn_model']}: {r['agent_tool_turn_per_call_on'][1][0]} vs "
                       f"{r['agent_tool_turn_per_call_off'][1][0]}",
             "the tool's result only", lambda r: all(on == new for _, on, _, new in r["tool_turn_second_calls"])),
        Line("conversation cache: same replies as without it", lambda r: str(r["same_replies"]), "always",
             lambda r: r["same_replies"]),
    )),
    Bench("vision", "bench.vision", lambda a: [*_model(a), "--repeats", "3"], (
        Line("TTFT: text turn (cached prefix) vs the same turn with a 640x480 picture",
             lambda r: f"{r['ttft_text_cached_s']} s vs {r['ttft_image_s']} s = {r['image_vs_text_cached']}x "
                       f"({r['prompt_tokens_text']} vs {r['prompt_tokens_image']} tok; cold text {r['ttft_text_cold_s']} s)"),
        Line("picture encoding (processor + vision tower)",
             lambda r: f"{r['image_encode_s']} s, {r['encode_share_of_image_ttft']:.0%} of the image TTFT ({r['picture']})"),
    )),
    Bench("turn_overhead", "bench.turn_overhead", lambda a: [*_model(a), "--repeats", "3"], (
        Line("agent turn vs bare mlx-lm", lambda r: f"{r['agent_turn_s']:.3f} s vs {r['bare_stream_generate_s']:.3f} s = {r['ratio']}x",
             "<= 1.05x", lambda r: r["ratio"] <= 1.05),
    )),
    Bench("decode", "bench.decode", lambda a: [*_model(a), "--repeats", "3"], (
        Line("decode speed", lambda r: f"{r['decode_tokens_per_s']} tok/s ({r['weights_mb']} MB of weights)"),
        Line("share of the memory-bandwidth bound",
             lambda r: f"{r['share_of_bandwidth_bound']:.0%} of {r['bandwidth_bound_tokens_per_s']} tok/s on {r['chip']}"
             if r["share_of_bandwidth_bound"] is not None else f"n/a ({r['chip']})"),
    )),
    Bench("constrained", "bench.constrained", lambda a: [*_model(a), "--repeats", "3", "--samples", "10"], (
        Line("constrained decoding cost per token",
             lambda r: f"{r['constrained_ms_per_token']} vs {r['unconstrained_ms_per_token']} ms = {r['ratio']}x "
                       f"(vocab {r['vocab_width']})", "<= 1.10x", lambda r: r["ratio"] <= 1.10),
        Line("constrained cost per token inside a tool call (mask + confidence floor)",
             lambda r: f"{r['inside_tool_call_ms_per_token']} vs {r['unconstrained_ms_per_token']} ms = {r['inside_tool_call_ratio']}x",
             "<= 1.10x", lambda r: r["inside_tool_call_ratio"] <= 1.10),
        Line("random-weight model's calls abandoned by the confidence floor",
             lambda r: f"{r['random_calls_abandoned_by_floor']} (floor {r['confidence_floor']})", "all",
             lambda r: r["random_calls_abandoned_by_floor"].split("/")[0] == r["random_calls_abandoned_by_floor"].split("/")[1]),
        Line("schema-valid sampled tool calls",
             lambda r: f"{r['valid_calls_constrained']} constrained, {r['valid_calls_unconstrained']} not",
             "all constrained", lambda r: r["valid_calls_constrained"].split("/")[0] == r["valid_calls_constrained"].split("/")[1]),
    )),
    Bench("first_run", "bench.first_run", lambda a: [*(["--model", a.model] if a.model else [])], (
        Line("first run: start -> first reply (new home)",
             lambda r: f"{r['first_reply_s']} s ({r['model']}, prefix {r['prefix_tokens']} tok, "
                       f"{r['progress_notes']} progress notes)", "<= 90 s", lambda r: r["first_reply_s"] <= 90),
        Line("restart -> ready (prefix warm)", lambda r: f"{r['restart_ready_s']} s ({r['restart_warm_up']})",
             "<= 5 s", lambda r: r["restart_ready_s"] <= 5),
    )),
    Bench("demo_dtype", "bench.demo_dtype", lambda a: ["--tokens", "128", "--repeats", "2"], (
        Line("demo model prefill by dtype (CPU)",
             lambda r: f"4-bit {r['prefill_4bit_tok_per_s']}, bfloat16 {r['prefill_bfloat16_tok_per_s']}, "
                       f"float32 {r['prefill_float32_tok_per_s']} tok/s: {r['fastest']} fastest"),
    )),
    Bench("intents", "bench.intents", lambda a: ["--calls", "5000"], (
        Line("phrase match, 1,000 templates", lambda r: f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms",
             "p99 <= 1 ms", lambda r: r["p99_ms"] <= 1.0),
    )),
    Bench("languages", "bench.languages", lambda a: ["--calls", "500"], (
        Line("phrase match, English (hassil recognize)",
             lambda r: f"p99 {r['en']['p99_ms']:.3f} ms ({r['en']['hassil_p99_ms']:.3f} ms)",
             "p99 <= 1 ms", lambda r: r["en"]["p99_ms"] <= 1.0),
        Line("phrase match, German HA templates (hassil recognize)",
             lambda r: f"p99 {r['de']['p99_ms']:.3f} ms ({r['de']['hassil_p99_ms']:.3f} ms), "
                       f"{r['de']['templates']} templates",
             "p99 <= 1 ms", lambda r: r["de"]["p99_ms"] <= 1.0),
    )),
    Bench("speech_languages", "bench.speech_languages", lambda a: ["--repeats", "2"], (
        Line("STT per call, one English clip set: tiny.en vs base (word accuracy)",
             lambda r: f"{r['en tiny.en hints']['per_call_s']} s ({r['en tiny.en hints']['accuracy']}) vs "
                       f"{r['en base hints']['per_call_s']} s ({r['en base hints']['accuracy']})"),
        Line("STT base per call (word accuracy), home's hints: de, es, fr",
             lambda r: ", ".join(f"{c} {r[f'{c} base hints']['per_call_s']} s ({r[f'{c} base hints']['accuracy']})"
                                 for c in ("de", "es", "fr"))),
        Line("STT base word accuracy without hints: de, es, fr",
             lambda r: ", ".join(f"{c} {r[f'{c} base plain']['accuracy']}" for c in ("de", "es", "fr"))),
        Line("STT base with temperature fallback: de, es, fr",
             lambda r: ", ".join(f"{c} {r[f'{c} base fallback']['per_call_s']} s ({r[f'{c} base fallback']['accuracy']})"
                                 for c in ("de", "es", "fr"))),
    )),
    Bench("ipc", "bench.ipc", lambda a: ["--repeats", "10", "--idle-seconds", "10"], (
        Line("turn via socket vs in-process", lambda r: f"{r['socket_ratio']}x ({r['socket_overhead_ms']:+.1f} ms)",
             "<= 1.05x", lambda r: r["socket_ratio"] <= 1.05),
        Line("status round trip", lambda r: f"p50 {r['status_p50_ms']} ms, p99 {r['status_p99_ms']} ms"),
        Line("daemon idle CPU", lambda r: f"{r['idle_cpu_percent']}% of a core", "<= 1%", lambda r: r["idle_cpu_percent"] <= 1),
        Line("daemon RSS (tiny model)", lambda r: f"{r['rss_mb']} MB", "<= 200 MB", lambda r: r["rss_mb"] <= 200),
    )),
    Bench("api", "bench.api", lambda a: ["--repeats", "30"], (
        Line("turn via the HTTP API (SSE) vs the socket",
             lambda r: f"{r['api_ratio']}x ({r['api_overhead_ms']:+.1f} ms; same tokens: {r['same_tokens']})",
             "<= 1.05x", lambda r: r["api_ratio"] <= 1.05 and r["same_tokens"]),
    )),
    Bench("schedule", "bench.schedule", lambda a: ["--repeats", "2"], (
        Line("100 jobs due at once: lateness", lambda r: f"p50 {r['late_p50_ms']} ms, p99 {r['late_p99_ms']} ms",
             "p99 <= 50 ms", lambda r: r["late_p99_ms"] <= 50),
        Line("start-up with 1,000 stored jobs", lambda r: f"{r['startup_ms']} ms"),
    )),
    Bench("voice", "bench.voice", lambda a: ["--rounds", "4", "--idle-seconds", "20", *(["--model", a.model] if a.model else [])], (
        Line("STT in agentd vs bare faster-whisper", lambda r: f"{r['stt_agentd_s']} vs {r['stt_bare_s']} s = {r['stt_ratio']}x",
             "<= 1.10x", lambda r: r["stt_ratio"] <= 1.10),
        Line("end of speech -> tool done (fast path)",
             lambda r: f"p50 {r['speech_end_to_tool_p50_ms']} ms, p95 {r['speech_end_to_tool_p95_ms']} ms "
                       f"({r['utterances'] - r['tool_missed']}/{r['utterances']} heard right)",
             "p50 <= 600 ms", lambda r: (r["speech_end_to_tool_p50_ms"] or 1e9) <= 600),
        Line("end of speech -> tool done (model in the loop)",
             lambda r: f"p50 {r['model_speech_end_to_tool_p50_ms']} ms, p95 {r['model_speech_end_to_tool_p95_ms']} ms "
                       f"= {r['model_vs_fast_path']}x the fast path ({r['model_in_the_loop']}, "
                       f"{r['model_utterances'] - r['model_tool_missed']}/{r['model_utterances']} called the tool)",
             "p50 <= 800 ms (Mac, Qwen3.5-4B)"),
        Line("CPU while listening to silence", lambda r: f"{r['listening_cpu_percent']}% of a core", "<= 5%",
             lambda r: r["listening_cpu_percent"] <= 5),
    )),
)


def run_all(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Run the chosen benchmarks; {name: figures} (or {"error": ...} for one that failed)."""
    results: dict[str, Any] = {}
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        log(f"== {bench.name}")
        started = time.perf_counter()
        try:
            results[bench.name] = importlib.import_module(bench.module).main(bench.argv(args))
        except (Exception, SystemExit) as exc:  # one broken benchmark must not hide the others
            results[bench.name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[bench.name]["bench_s"] = round(time.perf_counter() - started, 1)
    return results


def table(results: dict[str, Any]):
    from rich.table import Table

    machine = f"{platform.machine()} {platform.system()}, {_cores()} cores"
    out = Table(title=f"agentd bench on {machine}")
    for column in ("benchmark", "figure", "goal", ""):
        out.add_column(column)
    for bench in BENCHES:
        result = results.get(bench.name)
        if result is None:
            continue
        if "error" in result:
            out.add_row(bench.name, f"[red]failed: {result['error']}[/red]", "", "")
            continue
        for line in bench.lines:
            try:
                figure = line.figure(result)
                mark = "" if line.met is None else ("[green]met[/green]" if line.met(result) else "[red]missed[/red]")
            except (KeyError, TypeError, ValueError) as exc:
                figure, mark = f"[red]no figure ({exc})[/red]", ""
            out.add_row(line.label, figure, line.goal, mark)
    return out


def _cores() -> int:
    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentd bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run just these")
    parser.add_argument("--model", help="MLX model folder for the model benchmarks")
    parser.add_argument("--tiny", action="store_true", help="measure the tiny real-vocabulary Qwen3.5 (default when no Qwen3.5 is installed)")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args(argv)
    if not args.model and not args.tiny:
        args.model = _installed_qwen()
        args.tiny = args.model is None
    from rich.console import Console

    console = Console(stderr=True)
    results = run_all(args, log=lambda text: console.print(f"[dim]{text}[/dim]"))
    Console().print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    code = 1 if any("error" in r for r in results.values()) else 0
    # Skip interpreter teardown: after several MLX models (and llguidance, CTranslate2) have
    # lived in one process, native destructors at exit can segfault (seen here: exit 139 after
    # the table was printed). Everything is printed and written by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _installed_qwen() -> str | None:
    """The Qwen3.5 agentd itself would run, if one is installed (the demo model does not count)."""
    from agent.config.paths import models_dir, resolve_home
    from agent.llm.catalog import find_model
    from agent.config.settings import load_settings

    settings = load_settings()
    try:
        choice = find_model(settings.model.path, models_dir(resolve_home(None)), settings.model.preset)
    except Exception:  # a broken model.path: the tiny model still measures agentd's own costs
        return None
    return None if choice.is_demo else str(choice.path)


if __name__ == "__main__":
    sys.exit(main())
