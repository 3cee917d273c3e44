"""The phrase path by language: agentd's matcher against hassil's `recognize()` on the same
sentences (goal: agentd p99 <= 1 ms for English and German).

English runs agentd's own phrases (the bundled home skill); German runs Home Assistant's
German templates compiled into agentd's matcher. hassil gets the same home (device names,
rooms, no floors) and, for fairness, only the intents agentd maps onto its tools.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import median, percentile

DEVICES = {
    "en": [("kitchen light", "kitchen", "light"), ("kitchen plug", "kitchen", "switch"), ("hall lamp", "hall", "light"),
           ("bedroom light", "bedroom", "light"), ("front door", "hall", "lock"), ("study light", "study", "light")],
    "de": [("Küchenlicht", "Küche", "light"), ("Kaffeemaschine", "Küche", "switch"), ("Flurlicht", "Flur", "light"),
           ("Stehlampe", "Wohnzimmer", "light"), ("Haustür", "Flur", "lock"), ("Leselampe", "Arbeitszimmer", "light")],
}
SENTENCES = {
    "en": ["turn on the kitchen light", "switch off the hall lamp", "turn the bedroom light off", "turn on the kitchen plug",
           "set the study light to 30 percent", "dim the hall lamp to 10%", "lock the front door", "turn off the kitchen lights",
           "what is the weather like tomorrow", "tell me a joke about cats", "turn on the television",
           "remind me to call mum at five", "who won the match yesterday evening", "what if i turn on the lights"],
    "de": ["schalte das Küchenlicht ein", "mach die Stehlampe aus", "schalte das Licht im Flur aus",
           "schalte die Kaffeemaschine an", "dimme die Leselampe auf 30 %", "stelle die Helligkeit vom Flurlicht auf 10 Prozent",
           "schließe die Haustür ab", "Licht im Wohnzimmer an", "ist die Stehlampe an", "wie spät ist es",
           "wie wird das Wetter morgen", "erzähl mir einen Witz über Katzen", "schalte den Fernseher ein",
           "erinnere mich um fünf daran Mama anzurufen", "wer hat gestern das Spiel gewonnen",
           "dimme die Leselampe auf dreißig Prozent", "Helligkeit vom Flurlicht auf fünfundsiebzig Prozent"],
}


def home_registry(language: str):
    from agent.home_control.devices import Device, DeviceRegistry

    return DeviceRegistry([Device(name=n, room=r, kind=k) for n, r, k in DEVICES[language]])


def agentd_matcher(language: str):
    """The matcher the daemon builds for a home in `language`, with the bundled home skill."""
    import tempfile
    from pathlib import Path

    from agent.config.settings import load_settings
    from agent.daemon.assembly import core_registry
    from agent.skills.hass_actions import HomeLists
    from agent.skills.intents import IntentMatcher
    from agent.skills.loader import load_skills

    devices = home_registry(language)
    with tempfile.TemporaryDirectory() as home:
        skills = load_skills(load_settings(), Path(home))
    registry = core_registry()  # the clock's get_current_time answers "wie spät ist es"
    skills.register(registry)
    slots = {"device": devices.slot_values(), "room": devices.rooms(), "secure_device": devices.secure_slot_values()}
    return IntentMatcher.from_skills(skills, registry, slots, language=language, home=HomeLists.from_registry(devices))


def hassil_recognizer(language: str):
    """hassil's recognize() over HA's templates for the same intents and the same home."""
    from hassil import Intents, recognize
    from home_assistant_intents import get_intents

    from agent.skills.hass_actions import INTENTS, HomeLists

    data = get_intents(language)
    intents = Intents.from_dict({**data, "intents": {k: v for k, v in data["intents"].items() if k in INTENTS}})
    lists = HomeLists.from_registry(home_registry(language)).slot_lists()
    return lambda text: recognize(text, intents, slot_lists=lists)


def timed(function, said: list[str]) -> tuple[list[float], int]:
    times, hits = [], 0
    for text in said:
        start = time.perf_counter_ns()
        found = function(text)
        times.append((time.perf_counter_ns() - start) / 1e6)
        hits += found is not None
    return times, hits


def run(calls: int = 1000) -> dict:
    result = {}
    for language in ("en", "de"):
        started = time.perf_counter()
        matcher = agentd_matcher(language)
        compile_s = time.perf_counter() - started
        recognize = hassil_recognizer(language)
        rng = random.Random(1)
        said = [rng.choice(SENTENCES[language]) for _ in range(calls)]
        ours, our_hits = timed(matcher.match, said)
        theirs, their_hits = timed(recognize, said)
        result[language] = {
            "templates": len(matcher), "compile_s": round(compile_s, 2), "calls": calls,
            "p50_ms": round(median(ours), 3), "p99_ms": round(percentile(ours, 99), 3), "max_ms": round(max(ours), 3),
            "hassil_p50_ms": round(median(theirs), 3), "hassil_p99_ms": round(percentile(theirs, 99), 3),
            "hits": our_hits, "hassil_hits": their_hits,
        }
    result["p99_ms"] = max(result[lang]["p99_ms"] for lang in ("en", "de"))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args(argv)
    r = run(args.calls)
    for language in ("en", "de"):
        f = r[language]
        print(f"{language}: agentd {f['templates']} templates (compiled in {f['compile_s']} s): p50 {f['p50_ms']} ms, "
              f"p99 {f['p99_ms']} ms, max {f['max_ms']} ms, {f['hits']}/{f['calls']} matched | hassil recognize: "
              f"p50 {f['hassil_p50_ms']} ms, p99 {f['hassil_p99_ms']} ms, {f['hassil_hits']}/{f['calls']} matched")
    print(f"goal: agentd p99 <= 1 ms for both: {'met' if r['p99_ms'] <= 1 else 'NOT met'}")
    return r


if __name__ == "__main__":
    main()
