"""Home control over MQTT, against a real mosquitto broker on 127.0.0.1.

A second MQTT client (`Peer`) stands in for the devices: it sees exactly what agentd
publishes and, where a test asks, answers on the state topic as a real device would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from agent.events import ToolFinished
from agent.home_control import HomeControlError, start_home
from agent.config.settings import load_settings
from agent.tools import ToolContext, ToolRegistry
from agent.turn import Agent
from mosquitto import HOST, MOSQUITTO, Broker, broker  # noqa: F401  (broker is a fixture)
from agent.testkit.scripted_llm import ScriptedLLM, xml_call

SKILL_TOOLS = Path(__file__).resolve().parent.parent / "skills" / "home" / "tools.py"

DEVICES = [
    {"name": "kitchen light", "room": "kitchen", "kind": "light",
     "mqtt": {"command_topic": "home/kitchen/light/set", "state_topic": "home/kitchen/light",
              "brightness_topic": "home/kitchen/light/brightness/set"}},
    {"name": "kitchen plug", "room": "kitchen", "kind": "switch", "aliases": ["kettle"],
     "mqtt": {"command_topic": "home/kitchen/plug/set", "state_topic": "home/kitchen/plug"}},
    {"name": "kitchen blind", "room": "kitchen", "kind": "cover",
     "mqtt": {"command_topic": "home/kitchen/blind/set", "state_topic": "home/kitchen/blind"}},
    {"name": "hall temperature", "room": "hall", "kind": "sensor", "unit": "°C",
     "mqtt": {"state_topic": "home/hall/temperature"}},
    {"name": "front door", "room": "hall", "kind": "lock",
     "mqtt": {"command_topic": "home/door/set", "state_topic": "home/door",
              "availability_topic": "home/door/availability"}},
]


def load_tools():
    """The bundled skill's tools.py, imported from its file as the skill loader does."""
    spec = importlib.util.spec_from_file_location("home_skill_tools_under_test", SKILL_TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tools = load_tools()


def settings_for(port: int, **mqtt):
    """Settings as a user's config would give them, through the real loader."""
    options = {"host": HOST, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
               "state_wait_s": 0.5, **mqtt}
    return load_settings(overrides={"home": {"mqtt": options, "devices": DEVICES}})


def until(condition, timeout_s: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Peer:
    """Another MQTT client: records what arrives, publishes, and can play a device."""

    def __init__(self, port: int):
        self.messages: queue.Queue = queue.Queue()
        self.echo: dict[str, tuple[str, dict]] = {}  # command topic -> (state topic, payload map)
        self._acks: dict[int, threading.Event] = {}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"peer-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, codes, props: self._acks.setdefault(mid, threading.Event()).set()
        self.client.connect(HOST, port)
        self.client.loop_start()

    def watch(self, *topics: str) -> "Peer":
        _, mid = self.client.subscribe([(t, 0) for t in topics])
        assert self._acks.setdefault(mid, threading.Event()).wait(5), "no SUBACK"
        return self

    def play(self, command_topic: str, state_topic: str, answers: dict | None = None) -> "Peer":
        """Answer each command on command_topic with a retained state, as a device does."""
        self.echo[command_topic] = (state_topic, answers or {})
        return self.watch(command_topic)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def next(self, timeout_s: float = 5.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout_s)

    def silent(self, for_s: float = 0.5) -> bool:
        try:
            self.messages.get(timeout=for_s)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, message) -> None:
        self.messages.put((message.topic, message.payload))
        if message.topic in self.echo:
            state_topic, answers = self.echo[message.topic]
            text = message.payload.decode()
            client.publish(state_topic, answers.get(text, text), qos=1, retain=True)


@pytest.fixture
def home(broker):  # noqa: F811  (the fixture imported above)
    service = start_home(settings_for(broker.port))
    assert service.mqtt.wait_connected(5), broker.log_tail()
    yield service
    service.stop()


@pytest.fixture
def peer(broker):  # noqa: F811
    client = Peer(broker.port)
    yield client
    client.close()


def on(service) -> ToolContext:
    """The tool context the executor builds, with the home service handed in."""
    return ToolContext(home_control=service)


def turn(service, calls: list[str], reply: str, *, confirm=None) -> list:
    """One agent turn, on `service`, in which the (scripted) model makes the given tool calls."""
    registry = ToolRegistry()
    registry.add_module(tools, skill="home")
    llm = ScriptedLLM([*calls, reply])
    agent = Agent(llm=llm, registry=registry, system_prompt="You run the home.")
    agent.home_control = service  # as the daemon's assembly hands it in

    async def run():
        return [event async for event in agent.respond("do it", confirm=confirm)]

    return [e for e in asyncio.run(run()) if isinstance(e, ToolFinished)]


# ---------------------------------------------------------------------------- switching


def test_the_agent_turns_on_a_light(home, peer):
    peer.play("home/kitchen/light/set", "home/kitchen/light")
    [finished] = turn(home, [xml_call("set_device", device="kitchen light", state="on")], "It is on.")
    assert peer.next() == ("home/kitchen/light/set", b"ON")  # exactly the configured payload
    assert finished.ok and finished.result == "kitchen light is on"


def test_dimming_sends_the_scaled_level_then_on(home, peer):
    peer.watch("home/kitchen/light/set", "home/kitchen/light/brightness/set")
    peer.publish("home/kitchen/light", '{"state": "ON", "brightness": 102}', retain=True)
    result = tools.set_device(on(home), "kitchen lights", brightness=40)
    assert peer.next() == ("home/kitchen/light/brightness/set", b"102")  # 40% of 255
    assert peer.next() == ("home/kitchen/light/set", b"ON")
    assert result == "kitchen light is on (brightness 40%)"


def test_a_room_switches_its_lights_and_switches_but_not_its_blind(home, peer):
    peer.play("home/kitchen/light/set", "home/kitchen/light").play("home/kitchen/plug/set", "home/kitchen/plug")
    peer.watch("home/kitchen/blind/set")
    result = tools.set_device(on(home), "kitchen", "off")
    seen = {peer.next(), peer.next()}
    assert seen == {("home/kitchen/light/set", b"OFF"), ("home/kitchen/plug/set", b"OFF")}
    assert peer.silent(0.3)
    assert result == "kitchen light is off; kitchen plug is off"


def test_a_command_the_device_does_not_confirm_is_reported_as_sent(home, peer):
    peer.watch("home/kitchen/plug/set")
    result = tools.set_device(on(home), "kettle", "on")
    assert peer.next() == ("home/kitchen/plug/set", b"ON")
    assert result == "kitchen plug: sent 'on', but it has not confirmed it yet"


def test_locks_and_covers_need_the_confirm_tier(home, peer):
    peer.play("home/door/set", "home/door", {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"})
    with pytest.raises(HomeControlError, match="front door is a lock: change it with set_secure_device"):
        tools.set_device(on(home), "front door", "off")
    asked = []

    async def deny(tool, arguments):
        asked.append((tool.name, tool.risk, arguments))
        return False

    [denied] = turn(home, [xml_call("set_secure_device", device="front door", action="lock")], "Not done.", confirm=deny)
    assert asked == [("set_secure_device", "confirm", {"device": "front door", "action": "lock"})]
    assert not denied.ok and peer.silent(0.3)

    async def allow(tool, arguments):
        return True

    [done] = turn(home, [xml_call("set_secure_device", device="front door", action="lock")], "Locked.", confirm=allow)
    assert peer.next() == ("home/door/set", b"LOCK")
    assert done.ok and done.result == "front door is locked"


# ---------------------------------------------------------------------------- reading


def test_a_sensor_is_read_from_a_retained_message(broker, peer):  # noqa: F811
    peer.publish("home/hall/temperature", "21.5", retain=True)  # before agentd starts
    service = start_home(settings_for(broker.port))
    try:
        assert tools.get_device_state(on(service), "hall temperature") == "hall temperature is 21.5 °C"
    finally:
        service.stop()


def test_a_state_change_reaches_the_state_cache(home, peer):
    peer.publish("home/kitchen/plug", "OFF")
    until(lambda: tools.get_device_state(on(home), "kitchen plug") == "kitchen plug is off", what="off")
    peer.publish("home/kitchen/plug", "ON")  # not retained: only a subscriber sees it
    until(lambda: tools.get_device_state(on(home), "kettle") == "kitchen plug is on", what="on")
    assert home.mqtt.cache.get("home/kitchen/plug").payload == "ON"


def test_unknown_states_are_unavailable_not_guessed(home, peer):
    assert tools.get_device_state(on(home), "kitchen blind") == (
        "kitchen blind is unavailable: no state has been received on home/kitchen/blind")
    peer.publish("home/door", "LOCKED", retain=True)
    until(lambda: tools.get_device_state(on(home), "front door") == "front door is locked", what="locked")
    peer.publish("home/door/availability", "offline", retain=True)
    until(lambda: "offline" in tools.get_device_state(on(home), "front door"), what="offline")
    assert tools.get_device_state(on(home), "front door") == (
        "front door is unavailable: it reports itself offline on home/door/availability")


def test_list_devices_shows_kinds_rooms_and_states(home, peer):
    peer.publish("home/hall/temperature", "19", retain=True)
    until(lambda: home.mqtt.cache.get("home/hall/temperature"), what="the sensor")
    assert tools.list_devices(on(home), "hall").splitlines() == [
        "hall temperature (sensor in the hall): 19 °C",
        "front door (lock in the hall): unavailable: no state has been received on home/door",
    ]
    assert len(tools.list_devices(on(home)).splitlines()) == len(DEVICES)


# ---------------------------------------------------------------------------- the broker


def test_a_restarted_broker_is_reconnected(home, broker, peer):  # noqa: F811
    peer.publish("home/kitchen/plug", "ON", retain=True)
    until(lambda: tools.get_device_state(on(home), "kitchen plug") == "kitchen plug is on", what="on")
    peer.close()
    broker.stop()
    until(lambda: not home.mqtt.connected, what="the disconnect")
    assert tools.get_device_state(on(home), "kitchen plug") == (
        f"kitchen plug is unavailable: not connected to the MQTT broker at {HOST}:{broker.port}; retrying")
    with pytest.raises(HomeControlError, match="cannot reach the MQTT broker .* nothing was changed"):
        tools.set_device(on(home), "kitchen plug", "off")

    broker.start()
    assert home.mqtt.wait_connected(10), "agentd did not reconnect"
    # This broker keeps nothing across restarts: until the plug reports, its state is unknown.
    assert "no state has been received" in tools.get_device_state(on(home), "kitchen plug")
    device = Peer(broker.port).play("home/kitchen/plug/set", "home/kitchen/plug")
    try:
        device.publish("home/kitchen/plug", "ON", retain=True)
        until(lambda: tools.get_device_state(on(home), "kitchen plug") == "kitchen plug is on", what="state after restart")
        assert tools.set_device(on(home), "kitchen plug", "off") == "kitchen plug is off"
        assert device.next() == ("home/kitchen/plug/set", b"OFF")
    finally:
        device.close()


def test_starting_while_the_broker_is_down_connects_when_it_comes_up(broker):  # noqa: F811
    broker.stop()
    service = start_home(settings_for(broker.port))
    try:
        assert "not connected" in tools.get_device_state(on(service), "kitchen light")
        broker.start()
        assert service.mqtt.wait_connected(10)
    finally:
        service.stop()


@pytest.mark.skipif(MOSQUITTO is None, reason="the mosquitto broker is not installed (apt-get install mosquitto)")
def test_the_password_comes_from_the_variable_the_config_names(tmp_path, monkeypatch):
    secured = Broker(tmp_path, users={"agentd": "s3cret"}).start()
    options = {"username": "agentd", "password_env": "AGENTD_TEST_MQTT_PASSWORD"}
    try:
        monkeypatch.setenv("AGENTD_TEST_MQTT_PASSWORD", "wrong")
        service = start_home(settings_for(secured.port, **options))
        try:
            until(lambda: "refused" in tools.get_device_state(on(service), "kitchen plug"), what="the refusal")
            assert tools.get_device_state(on(service), "kitchen plug") == (
                f"kitchen plug is unavailable: not connected to the MQTT broker at {HOST}:{secured.port}; "
                "it refused the connection (Not authorized): check home.mqtt.username and the variable "
                "named by home.mqtt.password_env")
        finally:
            service.stop()
        monkeypatch.setenv("AGENTD_TEST_MQTT_PASSWORD", "s3cret")
        service = start_home(settings_for(secured.port, **options))
        try:
            assert service.mqtt.wait_connected(5), secured.log_tail()
        finally:
            service.stop()
    finally:
        secured.stop()
