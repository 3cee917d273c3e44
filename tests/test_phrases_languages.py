"""The fast phrase path in German, Spanish and French: Home Assistant's sentence templates,
compiled into agentd's matcher, acting on devices over the real mosquitto broker.

Each test builds the agent as the daemon does (settings with `language`, the bundled home
skill, `apply_skills`) and types sentences into `Agent.respond`, whose model must never be
asked: a sentence either runs on the phrase path or, for a near-miss, would go to the model
(checked with the matcher, without a turn).
"""

from __future__ import annotations

import textwrap

import pytest

from agent.config.settings import load_settings
from agent.daemon.assembly import apply_skills
from agent.turn import Agent
from language_homes import HOMES, NoModel, agent_for, play_all, say, sent
from mosquitto import HOST, broker  # noqa: F401  (broker is a fixture)
from test_home_mqtt import Peer


# (what is typed, MQTT messages it must send, words the reply must contain)
COMMANDS = {
    "de": [
        ("Schalte die Stehlampe ein", [("h/steh/set", "ON")], "eingeschaltet"),
        ("mach bitte das Flurlicht aus", [("h/flur/set", "OFF")], "ausgeschaltet"),
        ("Schalte das Licht im Wohnzimmer aus", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "ausgeschaltet"),
        ("dimme die Stehlampe auf 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Helligkeit"),
        ("Ist die Stehlampe an?", [], "Stehlampe ist an"),
    ],
    "es": [
        ("Enciende la lámpara", [("h/steh/set", "ON")], "activado"),
        ("apaga la luz del pasillo", [("h/flur/set", "OFF")], "apagado"),
        ("apaga las luces del salón", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "Luces apagadas"),
        ("pon el brillo de la lámpara al 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Brillo"),
    ],
    "fr": [
        ("Allume le lampadaire", [("h/steh/set", "ON")], "Allumé"),
        ("éteins la lumière du couloir", [("h/flur/set", "OFF")], "Éteint"),
        ("éteins les lumières du salon", [("h/decke/set", "OFF"), ("h/steh/set", "OFF")], "Éteint"),
        ("règle la luminosité du lampadaire à 40 %", [("h/steh/brightness/set", "102"), ("h/steh/set", "ON")], "Luminosité"),
    ],
}
# Sentences close to a command that must go to the model: an unknown device, a missing verb
# or state, a question about something else, English on a German home.
NEAR_MISSES = {
    "de": ["Schalte den Fernseher ein", "schalte die Stehlampe", "Stehlampe kaputt", "wie wird das Wetter morgen",
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
