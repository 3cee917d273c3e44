"""`agentd eval`: the case format, the scoring, the runner on a scripted model, and one run of
the CLI on the real trained tool-calling fixture model (the MLX path)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from agent.daemon.assembly import configure, core_registry
import agent.cli.eval as cli
from agent.eval.build import eval_settings, load_home, make_runner, registry_for, simulated_home
from agent.eval.cases import CaseFileError, DEFAULT_CASES, Matcher, check_cases, load_cases
from agent.eval.report import percentile, summarize
from agent.eval.runner import eval_schedule
from agent.eval.score import Comparer, ObservedCall, home_comparer, judge, wilson
from agent.config.settings import default_settings
from agent.turn import Agent
from agent.testkit.agent_model import trained_tool_model
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

CASES = DEFAULT_CASES


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_case(expect: str, extra: str = "") -> str:
    return f"cases:\n  - id: c1\n    say: hi\n{extra}    expect: {expect}\n"


# ---------------------------------------------------------------------------- case files


@pytest.mark.parametrize("text, message", [
    (one_case("{tool: set_device, calls: [{tool: x}]}"), "case 'c1': expect: give exactly one of tool, calls or none (got tool, calls)"),
    (one_case("{tool: set_device, args: {device: {regex: '('}}}"), "case 'c1': expect.args.device"),
    (one_case("{tool: set_device, args: {device: {one_of: [a], regex: b}}}"), "exactly one of one_of, contains, regex"),
    (one_case("none", "    sya: typo\n"), "case 'c1': sya: unknown key"),
    (one_case("{tool: set_device, args: {state: [1]}}"), "case 'c1': expect.args.state: expected text, a number, true/false or a matcher"),
    ("cases:\n  - id: a\n    say: x\n    expect: none\n  - id: a\n    say: y\n    expect: none\n", "two cases have the id 'a'"),
    ("cases:\n  - id: ok\n    say: x\n    expect: none\n  - say: y\n    expect: none\n", "case #2: id: Field required"),
    ("cases:\n  - id: x\n    say: [unclosed\n", "line "),
    ("cases: []\n", "cases: List should have at least 1 item"),
    ("home: nowhere.yaml\n" + one_case("none"), "home: no such file"),
])
def test_a_broken_case_file_names_the_file_case_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(CaseFileError) as caught:
        load_cases(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_on_and_off_stay_text_and_shorthands_expand(tmp_path):
    loaded = load_cases(write(tmp_path, one_case("{tool: set_device, args: {device: lamp, state: on}}", "    states: {lamp: off, sensor: 21.5}\n")))
    case = loaded.cases[0]
    assert case.expect.args["state"] == "on"  # not True: YAML 1.1's on/off would break every light case
    assert case.states == {"lamp": "off", "sensor": "21.5"}
    assert load_cases(write(tmp_path, one_case("none"))).cases[0].expect.none


def test_the_cli_reports_a_broken_file_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, one_case("{tool: no_such_tool}"))
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", str(path), "--home", str(tmp_path / "home")])
    assert args.handler(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}: case 'c1': expect.tool: there is no tool 'no_such_tool'" in err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def shipped():
    """The shipped case file, its home, the settings and the registry it is checked against."""
    loaded = load_cases(CASES)
    home_file = load_home(loaded)
    settings = eval_settings(default_settings(), home_file, with_intents=False, skills=loaded.file.skills)
    return loaded, home_file, settings, simulated_home(settings)


def test_the_shipped_cases_name_real_tools_arguments_and_devices(shipped, tmp_path):
    loaded, home_file, settings, sim = shipped
    assert len(loaded.cases) >= 150
    categories = {c.category for c in loaded.cases}
    assert {"lights", "switches", "covers", "locks", "climate", "sensors", "timers", "reminders", "memory",
            "arithmetic", "time", "chitchat", "ambiguous"} <= categories
    registries = {}

    def registry(skills):
        return registries.setdefault(skills, registry_for(settings, tmp_path, skills or None))

    assert check_cases(loaded, registry, sim.name_problem) == []
    assert [n for n in home_file.states if sim.name_problem(n)] == []
    # the check is real: a renamed argument or device would be caught
    broken = loaded.model_copy(update={"file": loaded.file.model_copy(update={"cases": [
        loaded.file.cases[0].model_copy(update={"expect": loaded.file.cases[0].expect.model_copy(
            update={"args": {"device": "attic light", "colour": "red"}})})]})})
    problems = check_cases(broken, registry, sim.name_problem)
    assert any("has no argument 'colour'" in p for p in problems)


def test_every_shipped_expectation_is_met_by_the_call_it_describes(shipped):
    """A model that writes exactly the expected calls scores 100%: no case is unpassable."""
    loaded, _, _, sim = shipped
    comparer = home_comparer(sim, lambda: __import__("datetime").datetime.now().astimezone())
    for case in loaded.cases:
        calls = []
        for spec in case.expect.expected_calls():
            args = {k: (v.one_of[0] if isinstance(v, Matcher) and v.one_of else v) for k, v in spec.args.items()
                    if not isinstance(v, Matcher) or v.one_of}
            calls.append(ObservedCall(spec.tool, args, True, "ok"))
        unmatched = [k for spec in case.expect.expected_calls() for k, v in spec.args.items() if isinstance(v, Matcher) and not v.one_of]
        if unmatched:
            continue  # regex/contains on free text: covered by the scoring tests below
        assert judge(case, calls, comparer).success, case.id


def test_limit_takes_cases_in_turn_from_each_category(shipped):
    loaded = shipped[0]
    chosen = cli.select(loaded.cases, 32, None)
    assert len(chosen) == 32
    counts = {}
    for case in chosen:
        counts[case.category] = counts.get(case.category, 0) + 1
    assert len(counts) == 16 and set(counts.values()) == {2}  # every category, evenly
    firsts = list({c.category: c.id for c in reversed(loaded.cases)}.values())[::-1]  # each category's first case
    assert [c.id for c in chosen[:16]] == firsts  # one of each category before any second one
    assert {c.category for c in cli.select(loaded.cases, 5, ["Locks", "time"])} == {"locks", "time"}
    assert cli.select(loaded.cases, None, None) == loaded.cases
    everything = cli.select(loaded.cases, 10_000, None)  # a limit past the end still goes round
    assert sorted(c.id for c in everything) == sorted(c.id for c in loaded.cases)
    assert [c.id for c in everything[:16]] == firsts


# ---------------------------------------------------------------------------- scoring


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(81, 100)
    assert (round(low, 4), round(high, 4)) == (0.7222, 0.8749)  # the textbook value for 81/100
    low, high = wilson(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73
    assert wilson(0, 5)[0] == 0.0


def test_percentile_interpolates():
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)


@pytest.fixture
def case_of(tmp_path):
    def make(expect: str):
        return load_cases(write(tmp_path, one_case(expect))).cases[0]
    return make


def test_subset_and_exact_argument_matching(case_of, shipped):
    sim = shipped[3]
    comparer = home_comparer(sim)
    subset = case_of("{tool: set_device, args: {device: kitchen light, state: 'on'}}")
    exact = case_of("{tool: set_device, args: {device: kitchen light, state: 'on'}, match: exact}")
    call = ObservedCall("set_device", {"device": "Kitchen Light", "state": "on", "brightness": 70, "temperature": None}, True, "ok")
    assert judge(subset, [call], comparer).success
    verdict = judge(exact, [call], comparer)
    assert not verdict.success and verdict.reason == "unexpected argument brightness=70"
    plain = ObservedCall("set_device", {"device": "kitchen light", "state": "on", "brightness": None}, True, "ok")
    assert judge(exact, [plain], comparer).success  # arguments left at None were not written
    # devices compare by what they name: the only kitchen light, not the whole kitchen
    assert judge(subset, [ObservedCall("set_device", {"device": "kitchen lights", "state": "on"}, True, "ok")], comparer).success
    room = judge(subset, [ObservedCall("set_device", {"device": "kitchen", "state": "on"}, True, "ok")], comparer)
    assert not room.success and room.reason == "device='kitchen', expected 'kitchen light'"
    assert not judge(subset, [ObservedCall("set_device", {"device": "kitchen light", "state": "off"}, True, "ok")], comparer).success


def test_values_compare_by_meaning_where_the_tool_gives_one(case_of):
    comparer = home_comparer(None)
    timer = case_of("{tool: set_timer, args: {duration: 10 minutes, label: {contains: pasta}}}")
    assert judge(timer, [ObservedCall("set_timer", {"duration": "10m", "label": "Pasta!"}, True, "ok")], comparer).success
    assert not judge(timer, [ObservedCall("set_timer", {"duration": "11 minutes", "label": "pasta"}, True, "ok")], comparer).success
    assert not judge(timer, [ObservedCall("set_timer", {"duration": "ten-ish", "label": "pasta"}, True, "ok")], comparer).success
    math = case_of("{tool: calculate, args: {expression: '15% of 80'}}")
    assert judge(math, [ObservedCall("calculate", {"expression": "0.15 * 80"}, True, "ok")], comparer).success
    assert not judge(math, [ObservedCall("calculate", {"expression": "15 * 80"}, True, "ok")], comparer).success
    brightness = case_of("{tool: set_device, args: {brightness: 30}}")
    assert judge(brightness, [ObservedCall("set_device", {"brightness": 30.0}, True, "ok")], Comparer()).success


def test_irrelevance_wrong_tool_and_validity(case_of):
    none = case_of("none")
    assert judge(none, [], Comparer()).success
    chatty = judge(none, [ObservedCall("get_current_time", {}, True, "ok")], Comparer())
    assert not chatty.success and not chatty.wrong_tool
    assert not judge(none, [ObservedCall("?", {}, False, "invalid")], Comparer()).success  # an attempt counts

    time = case_of("{tool: get_current_time}")
    wrong = judge(time, [ObservedCall("calculate", {"expression": "1"}, True, "ok")], Comparer())
    assert not wrong.success and wrong.wrong_tool and wrong.reason.startswith("called calculate(")
    invented = judge(time, [ObservedCall("launch_rocket", {}, False, "invalid")], Comparer())
    assert not invented.success and invented.wrong_tool
    unparsed = judge(time, [ObservedCall("?", {}, False, "invalid")], Comparer())
    assert not unparsed.success and not unparsed.wrong_tool
    # corrected within the turn: the outcome is right, the invalid attempt still costs validity
    fixed = [ObservedCall("get_current_time", {"zone": "x"}, False, "invalid", "unknown argument 'zone'"),
             ObservedCall("get_current_time", {}, True, "ok")]
    assert judge(time, fixed, Comparer()).success
    only_invalid = judge(time, fixed[:1], Comparer())
    assert not only_invalid.success and "invalid call" in only_invalid.reason
    both = case_of("{calls: [{tool: get_current_time}, {tool: calculate, args: {expression: '2+2'}}]}")
    assert judge(both, [ObservedCall("calculate", {"expression": "2 + 2"}, True, "ok"), ObservedCall("get_current_time", {}, True, "ok")], home_comparer()).success
    assert not judge(both, [ObservedCall("get_current_time", {}, True, "ok")], Comparer()).success
    listed = case_of("{tool: get_current_time, allow: [list_devices]}")
    assert judge(listed, [ObservedCall("list_devices", {}, True, "ok"), ObservedCall("get_current_time", {}, True, "ok")], Comparer()).success


# ---------------------------------------------------------------------------- runner (scripted model)


SCRIPT = {
    "light-kitchen-on": [xml_call("set_device", device="kitchen light", state="on"), "Done, the kitchen light is on now."],
    "lock-front-unlock": [xml_call("set_secure_device", device="front door", action="unlock"), "You said no."],
    "chat-joke": ["Why did the lamp go to school? To get brighter."],
    "math-12x7": [xml_call("calculate", expr="12*7"), xml_call("calculate", expression="12 * 7"), "It is 84."],
    "time-now": [xml_call("calculate", expression="1+1"), "Two."],
    "sensor-back-door-locked": [xml_call("get_device_state", device="Back Door"), "Yes, it is locked."],
    "memory-wifi-recall": [xml_call("recall", query="wifi password"), "It is hunter2."],
    "timer-10-min": [xml_call("set_timer", duration="10m"), "Timer set."],
    "convo-dim-it": [xml_call("set_device", device="kitchen light", brightness="40"), "Dimmed."],
}


def test_the_runner_plays_cases_through_the_real_turn(shipped, tmp_path):
    loaded, home_file, settings, _ = shipped
    sim = simulated_home(settings)
    by_id = {c.id: c for c in loaded.cases}
    cases = [by_id[i] for i in SCRIPT]
    llm = ScriptedLLM([out for outputs in SCRIPT.values() for out in outputs])
    agent = Agent(llm=llm, registry=core_registry(), system_prompt=settings.agent.system_prompt)
    configure(agent, settings)
    agent.home_control = sim.service()  # as build_app hands the simulated home in
    runner = make_runner(agent, settings, tmp_path, loaded, home_file, sim, tmp_path)
    applied = {}

    def done(result):
        applied[result.case.id] = list(sim.applied)

    with eval_schedule(tmp_path, settings, agent):
        results = asyncio.run(runner.run(cases, on_done=done))
    got = {r.case.id: r for r in results}
    assert {i for i, r in got.items() if not r.verdict.success} == {"time-now"}
    assert got["time-now"].verdict.wrong_tool

    kitchen = got["light-kitchen-on"]
    assert [n for n, _ in applied["light-kitchen-on"]] == ["kitchen light"]  # the device tool ran on the sim
    assert kitchen.stopped_by == "cancelled" and kitchen.reply != "Done, the kitchen light is on now."  # reply cut
    lock = got["lock-front-unlock"]
    assert lock.confirm_asked == ["set_secure_device"] and applied["lock-front-unlock"] == []  # answered no
    assert [c.outcome for c in lock.calls] == ["denied"]
    assert "back door is locked" in got["sensor-back-door-locked"].tool_results[0]  # the home file's state
    assert "hunter2" in got["memory-wifi-recall"].tool_results[0]  # the case's memory
    assert got["timer-10-min"].tool_results[0].startswith("Timer timer-")  # the schedule is reachable
    assert [c.valid for c in got["math-12x7"].calls] == [False, True]
    # the conversation came before the utterance
    dim_request = llm.requests[-2]
    assert [m["content"] for m in dim_request.messages[1:4]] == ["Turn on the kitchen light", "The kitchen light is on.", "Now dim it to 40 percent"]
    assert "set_device" in [t["function"]["name"] for t in dim_request.tools]  # the home skill is in play

    summary = summarize("scripted", results)
    assert (summary.successes, summary.cases) == (8, 9)
    assert (summary.valid_calls, summary.calls) == (8, 9)
    assert (summary.irrelevance_right, summary.irrelevance_cases) == (1, 1)
    assert (summary.wrong_tool_cases, summary.tool_cases) == (1, 8)
    assert (summary.coerced_calls, summary.coerced_rate) == (0, 0.0)  # a scripted model writes every name itself
    assert summary.by_category["time"] == (0, 1)


# ---------------------------------------------------------------------------- the CLI on a real MLX model

FIXTURE_CASES = """\
skills: []
cases:
  - {id: times, category: arithmetic, say: "What is 12 times 7?", expect: {tool: calculate, args: {expression: "12*7"}}}
  - {id: hello, category: chitchat, say: "Hello!", expect: none}
  - {id: rocket, category: chitchat, say: "Launch the rocket.", expect: none}
  - {id: add, category: arithmetic, say: "Add 2 and two.", expect: {tool: calculate, args: {expression: "4"}}}
"""
# The prompt the fixture model was trained on: default system prompt, core tools, greedy.
FIXTURE_CONFIG = """\
model:
  temperature: 0.0
  presence_penalty: 0.0
"""


def test_the_cli_compares_constrained_decoding_on_the_trained_fixture_model(tmp_path, capsys):
    model = trained_tool_model()
    cases = write(tmp_path, FIXTURE_CASES)
    config = write(tmp_path, FIXTURE_CONFIG, "config.yaml")
    report = tmp_path / "report.json"
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", str(cases), "--home", str(tmp_path / "home"), "--config", str(config), "--model", str(model),
                              "--max-tokens", "64", "--json", str(report), "--compare-constrained"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "task success" in out and "constrained" in out and "rocket" in out  # figures side by side, failures
    assert "coerced (goal 0)" in out
    variants = json.loads(report.read_text())["variants"]
    assert list(variants) == ["constrained", "unconstrained"]
    free, guided = variants["unconstrained"], variants["constrained"]
    # unconstrained, the model replays its training: an invented tool, a tool error it corrects
    summary = free["summary"]
    assert (summary["successes"], summary["cases"]) == (3, 4)
    assert (summary["valid_calls"], summary["calls"]) == (3, 4)
    assert (summary["irrelevance_accuracy"], summary["wrong_tool_rate"]) == (0.5, 0.0)
    results = {r["id"]: r for r in free["results"]}
    assert [(c["name"], c["valid"]) for c in results["rocket"]["calls"]] == [("launch_rocket", False)]
    assert [(c["name"], c["outcome"]) for c in results["add"]["calls"]] == [("calculate", "error"), ("calculate", "ok")]
    assert summary["latency_median_s"] > 0
    # constrained, the invented tool is still written and answered as unknown: the grammar
    # turns no call into another tool's, so nothing is coerced on either side
    guided_results = {r["id"]: r for r in guided["results"]}
    assert [(c["name"], c["valid"]) for c in guided_results["rocket"]["calls"]] == [("launch_rocket", False)]
    assert guided["summary"]["coerced_calls"] == free["summary"]["coerced_calls"] == 0
    assert guided["summary"]["valid_calls"] >= 1 and guided["summary"]["coerced_rate"] == 0.0
