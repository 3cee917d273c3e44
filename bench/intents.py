"""The fast phrase path: time per match with 1,000 templates (goal: p99 <= 1 ms)."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from bench.common import median, percentile

VERBS = ["turn on", "turn off", "switch on", "switch off", "open", "close", "start", "stop", "check",
         "show me", "lock", "unlock", "dim", "brighten", "play", "pause", "clean", "water", "heat", "cool"]
ADJECTIVES = ["front", "back", "garden", "guest", "main", "small", "big", "upstairs", "downstairs", "kids",
              "office", "garage", "basement", "attic", "north", "south", "east", "west", "old", "new"]
NOUNS = ["door", "window", "blinds", "fan", "heater", "sprinkler", "camera", "speaker", "tv", "kettle",
         "oven", "washer", "dryer", "vacuum", "gate", "pump", "radiator", "lamp", "alarm", "boiler",
         "humidifier", "purifier", "fridge", "freezer", "doorbell"]
DEVICES = [f"{room} {thing}" for room in ("kitchen", "living room", "bedroom", "hall", "bathroom")
           for thing in ("lights", "lamp", "ceiling light", "spots", "strip", "heater", "fan", "blinds", "speaker", "plug")]


def synthetic_skillset(count: int):
    """A SkillSet of `count` templates over 100 real tools, shaped like home commands."""
    from agent.skills.phrases import PhraseSpec
    from agent.skills.loader import Skill, SkillSet
    from agent.tools import ToolRegistry, build_tool

    rng = random.Random(0)
    registry, phrases, utterances = ToolRegistry(), [], []
    for i in range(100):
        def act(device: str = "", level: int = 0, item: str = "") -> str:
            return "ok"

        act.__name__, act.__doc__ = f"home_action_{i}", f"Home action {i}."
        registry.add(build_tool(act))
    shapes = [
        ("{verb} [the] {adj} {noun}", {}, lambda v, a, n: f"{v} the {a} {n}"),
        ("{verb} [the] {{device}} [in the] {adj} {noun}", {"device": "{device}"},
         lambda v, a, n: f"{v} {rng.choice(DEVICES)} in the {a} {n}"),
        ("set [the] {adj} {noun} to {{level}} [percent]", {"level": "{level}"}, lambda v, a, n: f"set the {a} {n} to 40 percent"),
        ("add {{item}} to [the|my] {adj} {noun} list", {"item": "{item}"}, lambda v, a, n: f"add oat milk to my {a} {n} list"),
    ]
    combos = [(a, n) for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(combos)
    for i in range(count):
        template, args, say = shapes[i % len(shapes)]
        verb, (adj, noun) = VERBS[i % len(VERBS)], combos[i % len(combos)]
        phrases.append(PhraseSpec(template=template.format(verb=verb, adj=adj, noun=noun), tool=f"home_action_{i % 100}", args=args))
        utterances.append(say(verb, adj, noun))
    skill = Skill(name="bench", path=Path("."), bundled=True, description="bench", phrases=phrases,
                  slots={"level": "number", "item": "text"}, enabled=True)
    return SkillSet(skills=[skill]), registry, utterances


MISSES = ["what is the weather like tomorrow", "tell me a joke about cats", "turn the kitchen lights into a disco",
          "what if i turn on the lights", "remind me to call mum at five", "how tall is the eiffel tower",
          "please turn on the thing", "open the pod bay doors hal", "who won the match yesterday evening"]


def run(count: int = 1000, calls: int = 20000) -> dict:
    from agent.skills.intents import IntentMatcher

    skillset, registry, hits = synthetic_skillset(count)
    started = time.perf_counter()
    matcher = IntentMatcher.from_skills(skillset, registry, {"device": DEVICES})
    compile_s = time.perf_counter() - started
    rng = random.Random(1)
    said = [rng.choice(hits) if rng.random() < 0.5 else rng.choice(MISSES) for _ in range(calls)]
    times, matched = [], 0
    for text in said:
        start = time.perf_counter_ns()
        found = matcher.match(text)
        times.append((time.perf_counter_ns() - start) / 1e6)
        matched += found is not None
    return {"templates": len(matcher), "problems": len(matcher.problems), "compile_s": compile_s, "calls": calls,
            "matched": matched, "p50_ms": median(times), "p99_ms": percentile(times, 99), "max_ms": max(times)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--templates", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    r = run(args.templates, args.calls)
    print(f"{r['templates']} templates compiled in {r['compile_s'] * 1000:.0f} ms; {r['calls']} matches "
          f"({r['matched']} hits): p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms "
          f"(goal: p99 <= 1 ms)")
    return r


if __name__ == "__main__":
    main()
