"""Homes in German, Spanish and French for the language tests (typed in
test_phrases_languages, spoken in test_voice_languages): the devices, the agent assembled as
the daemon does it, and helpers to type a sentence and read what reached the broker.
"""

from __future__ import annotations

import asyncio

from agent.config.settings import load_settings
from agent.daemon.assembly import apply_skills, device_slots
from agent.events import ReplyDone, ToolFinished
from agent.home_control import start_home
from agent.skills.loader import trust_skill
from agent.turn import Agent
from mosquitto import HOST


def light(name: str, room: str, topic: str, **mqtt) -> dict:
    return {"name": name, "room": room, "kind": "light",
            "mqtt": {"command_topic": f"{topic}/set", "state_topic": topic, "brightness_topic": f"{topic}/brightness/set",
                     **mqtt}}


def thermostat(name: str, room: str, topic: str) -> dict:
    return {"name": name, "room": room, "kind": "climate",
            "mqtt": {"command_topic": f"{topic}/set", "state_topic": topic, "temperature_topic": f"{topic}/temperature/set"}}


def lock(name: str, room: str, topic: str) -> dict:
    return {"name": name, "room": room, "kind": "lock", "mqtt": {"command_topic": f"{topic}/set", "state_topic": topic}}


HOMES = {
    "de": [light("Stehlampe", "Wohnzimmer", "h/steh"), light("Deckenlicht", "Wohnzimmer", "h/decke"),
           light("Flurlicht", "Flur", "h/flur"), lock("Haustür", "Flur", "h/tuer"),
           thermostat("Thermostat", "Wohnzimmer", "h/therm")],
    "es": [light("lámpara", "salón", "h/steh"), light("plafón", "salón", "h/decke"),
           light("luz del pasillo", "pasillo", "h/flur"), lock("puerta principal", "pasillo", "h/tuer"),
           thermostat("termostato", "salón", "h/therm")],
    "fr": [light("lampadaire", "salon", "h/steh"), light("plafonnier", "salon", "h/decke"),
           light("lumière du couloir", "couloir", "h/flur"), lock("porte d'entrée", "couloir", "h/tuer"),
           thermostat("thermostat", "salon", "h/therm")],
}


class NoModel:
    """The phrase path must answer: a model call fails the test."""

    async def stream(self, request, cancel=None):
        raise AssertionError(f"the model was asked: {request}")
        yield  # pragma: no cover


def agent_for(language: str, port: int, home_dir, trust: tuple[str, ...] = (),
              devices: list[dict] | None = None) -> tuple[Agent, object]:
    """The agent as the daemon assembles it, for a home in `language` (user skills in home_dir/skills)."""
    options = {"host": HOST, "port": port, "state_wait_s": 0.5}
    home = {"mqtt": options, "devices": devices or HOMES[language]}
    settings = load_settings(overrides={"language": language, "home": home})
    for name in trust:
        trust_skill(settings, home_dir, name)
    service = start_home(settings)
    assert service.mqtt.wait_connected(5)
    agent = Agent(llm=NoModel(), registry=None, system_prompt="")
    agent.settings, agent.home_control = settings, service
    apply_skills(agent, settings, home_dir, None, device_slots(service))
    assert agent.intents.problems == []
    return agent, service


def say(agent: Agent, text: str, confirm=None) -> tuple[list[ToolFinished], str]:
    async def run():
        return [e async for e in agent.respond(text, confirm=confirm)]

    events = asyncio.run(run())
    done = [e for e in events if isinstance(e, ReplyDone)][-1]
    return [e for e in events if isinstance(e, ToolFinished)], done.text


def play_all(peer, language: str) -> None:
    """Have `peer` (a test_home_mqtt.Peer) play every device of the home in `language`."""
    for device in HOMES[language]:
        topic = device["mqtt"]["state_topic"]
        peer.play(f"{topic}/set", topic, {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"})
        if "temperature_topic" in device["mqtt"]:  # a thermostat reports its new target
            peer.play(device["mqtt"]["temperature_topic"], topic)
    peer.watch("h/+/brightness/set")


def sent(peer, count: int) -> list[tuple[str, str]]:
    """The next `count` messages `peer` saw, sorted, payloads as text."""
    return sorted((topic, payload.decode()) for topic, payload in (peer.next() for _ in range(count)))
