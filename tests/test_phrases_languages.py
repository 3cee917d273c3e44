"""The fast phrase path in German, Spanish and French: Home Assistant's sentence templates,
compiled into agentd's matcher, acting on devices over the real mosquitto broker.

Each test builds the agent as the daemon does (settings with `language`, the bundled home
skill, `apply_skills`) and types sentences into `Agent.respond`, whose model must never be
asked: a sentence either runs on the phrase path or, for a near-miss, would go to the model
(checked with the matcher, without a turn).
"""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from agent.config.settings import load_settings
from agent.daemon.assembly import apply_skills
from agent.events import ToolFinished
from agent.turn import Agent
from language_homes import HOMES, NoModel, agent_for, light, play_all, say, sent
from mosquitto import HOST, broker  # noqa: F401  (broker is a fixture)
from test_home_mqtt import Peer, until


# (what is typed, MQTT messages it must send, words the reply must contain)
COMMANDS = {
    "de": [
        ("Schalte die Stehlampe ein", [("h/steh/set", "ON")], "eingeschaltet"),
        ("mach bitte das Flurlicht aus", [("h/flur/set", "OFF")], "ausgeschaltet"),
        ("Schalte das Licht im Wohnzimmer aus", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "ausgeschaltet"),
        ("dimme die Stehlampe auf 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Helligkeit"),
        ("Ist die Stehlampe an?", [], "Stehlampe ist an"),
        # number words, as typed or as speech recognition may write them
        ("stell die Stehlampe auf fünfzig Prozent", [("h/steh/brightness/set", "128"), ("h/steh/set", "ON")],
         "Helligkeit eingestellt"),
        ("dimme das Flurlicht auf hundert Prozent", [("h/flur/brightness/set", "255"), ("h/flur/set", "ON")], "Helligkeit"),
        ("stelle die Heizung vom Thermostat auf einundzwanzig Grad ein", [("h/therm/temperature/set", "21")],
         "Temperatur auf 21 Grad gestellt"),
        ("Temperatur im Wohnzimmer auf zweiundzwanzig Komma fünf Grad", [("h/therm/temperature/set", "22.5")], "22.5 Grad"),
    ],
    "es": [
        ("Enciende la lámpara", [("h/steh/set", "ON")], "activado"),
        ("apaga la luz del pasillo", [("h/flur/set", "OFF")], "apagado"),
        ("apaga las luces del salón", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "Luces apagadas"),
        ("pon el brillo de la lámpara al 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Brillo"),
        ("pon la lámpara al setenta y cinco por ciento", [("h/steh/brightness/set", "191"), ("h/steh/set", "ON")], "Brillo"),
        ("pon el termostato a veintiún grados", [("h/therm/temperature/set", "21")], "Temperatura ajustada"),
    ],
    "fr": [
        ("Allume le lampadaire", [("h/steh/set", "ON")], "Allumé"),
        ("éteins la lumière du couloir", [("h/flur/set", "OFF")], "Éteint"),
        ("éteins les lumières du salon", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "Éteint"),
        ("règle la luminosité du lampadaire à 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Luminosité"),
        ("règle le lampadaire à quatre-vingt-dix pour cent", [("h/steh/brightness/set", "230"), ("h/steh/set", "ON")],
         "Luminosité"),
        ("mets le thermostat à dix-neuf degrés", [("h/therm/temperature/set", "19")], "réglée sur 19 degrés"),
    ],
}
# Sentences close to a command that must go to the model: an unknown device, a missing verb
# or state, a question about something else, English on a German home.
NEAR_MISSES = {
    "de": ["Schalte den Fernseher ein", "schalte die Stehlampe", "Stehlampe kaputt", "wie wird das Wetter morgen",
           "dimme die Stehlampe auf zweihundert Prozent", "dimme die Stehlampe auf fünfzigtausend Prozent",
           "schalte die Stehlampe vom Nachbarn ein", "turn on the Stehlampe", "schalte das Licht im Keller aus"],
    "es": ["enciende la tele", "la lámpara está rota", "apaga la lámpara del vecino", "qué tiempo hace mañana"],
    "fr": ["allume la télé", "le lampadaire est cassé", "éteins le lampadaire du voisin", "quel temps fera-t-il demain"],
}


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_commands_act_on_the_devices_and_reply_in_the_language(language, broker, tmp_path):  # noqa: F811
    agent, service = agent_for(language, broker.port, tmp_path)
    peer = Peer(broker.port)
    try:
        play_all(peer, language)
        for text, messages, reply_words in COMMANDS[language]:
            finished, reply = say(agent, text)
            assert finished and finished[0].ok, (text, finished)
            assert sent(peer, len(messages)) == sorted(messages), text
            assert reply_words.lower() in reply.lower(), (text, reply)
        assert peer.silent(0.3)
        for text in NEAR_MISSES[language]:
            assert agent.intents.match(text) is None, (text, agent.intents.explain(text))
    finally:
        peer.close()
        service.stop()


def test_explain_shows_the_text_as_the_language_matches_it(broker, tmp_path):  # noqa: F811
    agent, service = agent_for("de", broker.port, tmp_path)
    try:
        assert agent.intents.explain("Schalte bitte den Fernseher ein!") == \
            f"model: no phrase fits 'schalte den fernseher ein' ({len(agent.intents)} templates)"
        assert agent.intents.explain("Stell die Stehlampe auf fünfzig Prozent").startswith("phrase path: ")
    finally:
        service.stop()


def test_a_lock_still_asks_and_answers_in_german(broker, tmp_path):  # noqa: F811
    agent, service = agent_for("de", broker.port, tmp_path)
    peer = Peer(broker.port)
    try:
        play_all(peer, "de")
        finished, reply = say(agent, "schließe die Haustür ab")  # no confirm: the executor denies it
        assert finished[0].outcome == "denied" and reply == "Nicht ausgeführt: das braucht deine Bestätigung."
        assert peer.silent(0.3)
        asked = []

        async def yes(tool, arguments):
            asked.append((tool.name, arguments))
            return True

        finished, reply = say(agent, "schließe die Haustür ab", confirm=yes)
        assert asked == [("set_secure_device", {"device": "Haustür", "action": "lock"})]
        assert sent(peer, 1) == [("h/tuer/set", "LOCK")] and reply == "Abgeschlossen"
    finally:
        peer.close()
        service.stop()


def test_german_replies_follow_what_the_devices_report(broker, tmp_path):  # noqa: F811
    """Confirmed, not confirmed and unreachable, in German, decided from the devices' states
    (ToolFinished.data) while the model's text stays the home tools' English."""
    devices = [light("Stehlampe", "Wohnzimmer", "h/steh"),  # answers every command
               light("Flurlicht", "Flur", "h/flur"),  # never reports a state
               light("Deckenlicht", "Wohnzimmer", "h/decke", availability_topic="h/decke/availability")]
    agent, service = agent_for("de", broker.port, tmp_path, devices=devices)
    peer = Peer(broker.port)
    try:
        peer.play("h/steh/set", "h/steh")
        finished, reply = say(agent, "Schalte die Stehlampe ein")
        assert finished[0].result == "Stehlampe is on" and finished[0].data.confirmed
        assert "eingeschaltet" in reply and "bestätigt" not in reply

        finished, reply = say(agent, "Schalte das Flurlicht ein")
        assert finished[0].ok and finished[0].result == "Flurlicht: sent 'on', but it has not confirmed it yet"
        assert reply == "Nicht bestätigt: Flurlicht hat nicht geantwortet"
        _, reply = say(agent, "Ist das Flurlicht an?")
        assert reply == "Flurlicht ist nicht erreichbar"

        peer.publish("h/decke", "ON", retain=True)
        peer.publish("h/decke/availability", "offline", retain=True)
        # Before any message it is unavailable too ("no state has been received"): wait for the offline one.
        until(lambda: "offline" in (service.read("Deckenlicht")[0].reason or ""), what="agentd to hear that it is offline")
        _, reply = say(agent, "Ist das Deckenlicht an?")
        assert reply == "Deckenlicht ist nicht erreichbar"
        peer.publish("h/steh", '{"state": "ON", "brightness": 102}', retain=True)
        until(lambda: service.read("Stehlampe")[0].attributes, what="agentd to hear the brightness")
        finished, reply = say(agent, "Ist die Stehlampe an?")
        assert finished[0].result == "Stehlampe is on (brightness 40%)"
        assert reply == "Stehlampe ist an (Helligkeit 40%)"

        # A room: one light answers, the offline one does not.
        finished, reply = say(agent, "Schalte das Licht im Wohnzimmer aus")
        assert not finished[0].data.confirmed
        assert reply == "Nicht bestätigt: Stehlampe ist aus; Deckenlicht hat nicht geantwortet"
    finally:
        peer.close()
        service.stop()


def test_a_device_left_alone_is_not_confirmed_and_named():
    """HA's German sentences never switch a whole room of any kind, so no German command above
    leaves a confirm-marked device alone; the reply for one, from the data a change returns."""
    from agent.home_control import ChangeResult, DeviceState
    from agent.skills.hass_replies import Reply

    report = ChangeResult([DeviceState("Stehlampe", True, "off")], skipped=["Heizlüfter"])
    outcome = ToolFinished(call_id="c", name="set_device", result="(the model's text)", ok=True, duration_s=0.0,
                           data=report)
    reply = Reply("de", {}, "HassTurnOff", None, {"area": "Wohnzimmer"})(outcome)
    assert reply == "Nicht bestätigt: Stehlampe ist aus; nicht geändert, braucht Bestätigung: Heizlüfter"


def test_a_skills_own_german_sentence(broker, tmp_path):  # noqa: F811
    folder = tmp_path / "skills" / "kino"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(textwrap.dedent("""\
        ---
        name: kino
        description: Movie night.
        slots:
          mood: [ruhig, hell]
        sentences:
          de:
            - sentences: ["(starte|beginne) [den] Kinoabend [<area>]", "Kinoabend {mood} [bitte]"]
              tool: set_device
              args: {device: Stehlampe, state: "off"}
              reply: "Viel Spaß beim Film{mood}."
        ---
        Movie night.
        """), encoding="utf-8")
    agent, service = agent_for("de", broker.port, tmp_path, trust=("kino",))
    peer = Peer(broker.port)
    try:
        play_all(peer, "de")
        finished, reply = say(agent, "Starte den Kinoabend im Wohnzimmer")
        assert finished[0].ok and sent(peer, 1) == [("h/steh/set", "OFF")]
        assert reply == "Viel Spaß beim Film."
        assert agent.intents.match("Kinoabend laut") is None  # not one of the slot's values
    finally:
        peer.close()
        service.stop()


def test_unknown_language_keeps_the_english_phrases(broker, tmp_path):  # noqa: F811
    settings = load_settings(overrides={"language": "tlh", "home": {"mqtt": {"host": HOST, "port": broker.port},
                                                                     "devices": HOMES["de"]}})
    agent = Agent(llm=NoModel(), registry=None, system_prompt="")
    agent.settings = settings
    apply_skills(agent, settings, tmp_path, None, {"device": ["Stehlampe"], "room": [], "secure_device": []})
    assert any("'tlh' has no Home Assistant sentences" in p for p in agent.intents.problems)
    assert agent.intents.match("turn on the Stehlampe").arguments["device"] == "Stehlampe"


def test_the_bench_agrees_with_hassil_on_which_german_sentences_match():
    from bench.languages import run

    figures = run(calls=60)["de"]
    assert figures["templates"] > 300 and figures["hits"] == figures["hassil_hits"] > 0


@pytest.mark.parametrize("language,said", [("de", "Es ist 07:05"), ("fr", "Il est 07:05"),
                                           ("es", "Son las 7 y 5 de la mañana")])
def test_the_time_in_the_language_from_the_clocks_moment(language, said):
    """HA's own response for the time, fed the moment the clock tool hands over as data."""
    import importlib.util
    from datetime import datetime, timezone
    from pathlib import Path

    from agent.actions import Action, Executor, finished_event
    from agent.skills.hass_phrases import load_language
    from agent.skills.hass_replies import Reply
    from agent.tools import FixedClock, ToolRegistry

    # the checkout's own tools/clock.py (an editable install may map agent.core_tools elsewhere)
    spec = importlib.util.spec_from_file_location("clock_under_test", Path(__file__).parent.parent / "tools" / "clock.py")
    clock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clock)
    registry = ToolRegistry()
    registry.add(clock.get_current_time)
    executor = Executor(registry, clock=FixedClock(datetime(2026, 12, 7, 7, 5, tzinfo=timezone.utc)))
    finished = finished_event(asyncio.run(executor.run(Action(tool="get_current_time"))))
    assert finished.result == "Monday 7 December 2026, 07:05 (7:05 AM), timezone UTC"  # the model's text
    responses = load_language(language)[1]["responses"]["intents"]
    assert Reply(language, responses, "HassGetCurrentTime", None, {})(finished) == said
