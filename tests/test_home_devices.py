"""Home control without a network: finding devices, the `home:` config, the skill's format,
and the service's rules (which tool may change what), on an in-memory backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent.home_control import (
    DeviceCommand,
    Device,
    DeviceRegistry,
    DeviceState,
    HomeControlError,
    HomeService,
    MqttTopics,
)
from agent.skills.intents import IntentMatcher
from agent.config.settings import ConfigError, load_settings
from agent.skills.loader import load_skills
from agent.tools import ToolContext, ToolError, ToolRegistry

SKILL_TOOLS = Path(__file__).resolve().parent.parent / "skills" / "home" / "tools.py"
_spec = importlib.util.spec_from_file_location("home_skill_tools_under_test_devices", SKILL_TOOLS)
tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tools)

TOPICS = MqttTopics(command_topic="x/set", state_topic="x")
HOUSE = [
    Device("kitchen ceiling light", "light", "kitchen", mqtt=TOPICS),
    Device("kitchen counter light", "light", "kitchen", mqtt=TOPICS),
    Device("kitchen plug", "switch", "kitchen", aliases=("kettle",), mqtt=TOPICS),
    Device("oven light", "light", "kitchen", confirm=True, mqtt=TOPICS),
    Device("bedroom lamp", "light", "bedroom", mqtt=TOPICS),
    Device("garage door", "cover", "garage", mqtt=TOPICS),
    Device("front door", "lock", "hall", mqtt=TOPICS),
    Device("hall temperature", "sensor", "hall", unit="°C", mqtt=TOPICS),
]


class MemoryBackend:
    """A light Backend for the service's rules: devices are whatever it was last told."""

    name = "memory"

    def __init__(self):
        self.states: dict[str, str] = {}
        self.applied: list[tuple[str, DeviceCommand]] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def read(self, devices):
        return [DeviceState(d.name, d.name in self.states, self.states.get(d.name), reason="never set")
                for d in devices]

    def apply(self, changes):
        for device, command in changes:
            self.applied.append((device.name, command))
            self.states[device.name] = command.expected_state() or "set"
        return self.read([d for d, _ in changes])


@pytest.fixture
def service():
    service = HomeService(DeviceRegistry(HOUSE), mqtt=MemoryBackend())
    yield service
    service.stop()


@pytest.fixture
def house(service):
    return service.mqtt


@pytest.fixture
def ctx(service):
    """The tool context the executor would build: the home service handed in."""
    return ToolContext(home_control=service)


# ---------------------------------------------------------------------------- finding


@pytest.mark.parametrize("said, found", [
    ("kitchen plug", ["kitchen plug"]),
    ("the Kettle", ["kitchen plug"]),
    ("counter light", ["kitchen counter light"]),
    ("bedrom lamp", ["bedroom lamp"]),  # misheard
    ("kitchen", ["kitchen ceiling light", "kitchen counter light", "kitchen plug", "oven light"]),
    ("kitchen lights", ["kitchen ceiling light", "kitchen counter light", "oven light"]),
    ("lights in the kitchen", ["kitchen ceiling light", "kitchen counter light", "oven light"]),
    ("all the lamps", ["kitchen ceiling light", "kitchen counter light", "oven light", "bedroom lamp"]),
])
def test_devices_are_found_by_name_alias_room_or_kind(said, found):
    assert [d.name for d in DeviceRegistry(HOUSE).find(said).devices] == found


@pytest.mark.parametrize("said, message", [
    ("door", "'door' could mean garage door, front door: say which one"),
    ("attic", "no device or room called 'attic'; devices: kitchen ceiling light, "),
])
def test_an_unclear_or_unknown_name_says_what_exists(said, message):
    with pytest.raises(HomeControlError) as caught:
        DeviceRegistry(HOUSE).find(said)
    assert str(caught.value).startswith(message)


def test_slot_values_for_the_fast_path_leave_out_secure_devices():
    values = DeviceRegistry(HOUSE).slot_values()
    assert "kettle" in values and "kitchen lights" in values and "all the lights" in values
    assert not {"oven light", "garage door", "front door", "hall temperature", "garage"} & set(values)


# ---------------------------------------------------------------------------- the rules


def test_a_room_changes_plain_devices_and_names_the_ones_it_skipped(house, ctx):
    result = tools.set_device(ctx, "kitchen", "on")
    assert result == ("kitchen ceiling light is on; kitchen counter light is on; kitchen plug is on; "
                      "not changed: oven light (needs set_secure_device)")
    assert "oven light" not in house.states


@pytest.mark.parametrize("call, message", [
    (lambda ctx: tools.set_device(ctx, "hall temperature", "on"), "hall temperature is a sensor: it can only be read"),
    (lambda ctx: tools.set_device(ctx, "kettle", brightness=50), "kitchen plug is a switch: only lights have a brightness"),
    (lambda ctx: tools.set_device(ctx, "bedroom lamp", temperature=20), "bedroom lamp is a light: only thermostats"),
    (lambda ctx: tools.set_device(ctx, "garage door", "on"), "garage door is a cover: change it with set_secure_device"),
    (lambda ctx: tools.set_device(ctx, "oven light", "on"), "oven light is marked confirm: change it with set_secure_device"),
    (lambda ctx: tools.set_secure_device(ctx, "front door", "open"), "front door is a lock: it can lock or unlock, not open"),
    (lambda ctx: tools.set_secure_device(ctx, "kitchen", "on"), "set_secure_device changes one device at a time"),
    (lambda ctx: tools.set_device(ctx, "bedroom lamp"), "say what to change"),
])
def test_what_a_tool_may_not_do_is_a_tool_error(house, ctx, call, message):
    with pytest.raises(ToolError, match=message):
        call(ctx)
    assert house.applied == []


def test_secure_devices_change_through_the_confirm_tool(ctx):
    assert tools.set_secure_device(ctx, "garage door", "close") == "garage door is closed"
    assert tools.set_secure_device(ctx, "oven light", "on") == "oven light is on"


def test_zero_brightness_is_off_and_dimming_turns_on(house, ctx):
    tools.set_device(ctx, "bedroom lamp", brightness=0)
    tools.set_device(ctx, "bedroom lamp", brightness=30)
    assert house.applied == [("bedroom lamp", DeviceCommand("off")), ("bedroom lamp", DeviceCommand("on", 30))]


def test_without_a_home_service_handed_in_the_tools_say_so():
    with pytest.raises(ToolError, match="home control is not running"):
        tools.list_devices(ToolContext())


# ---------------------------------------------------------------------------- the config


def config(tmp_path, devices: str, mqtt: str = "    host: broker.local\n") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"home:\n  mqtt:\n{mqtt}  hass:\n    url: http://ha.local:8123\n  devices:\n{devices}")
    return path


def test_devices_load_with_defaults_and_both_backends(tmp_path):
    home = load_settings(config(tmp_path, (
        "    - {name: Desk lamp, kind: light, mqtt: {command_topic: d/set, payloads: {on: '1', off: '0'}}}\n"
        "    - {name: Front door, kind: lock, entity_id: lock.front_door}\n"))).home
    assert load_settings().home.devices == []
    lamp, door = (Device.from_settings(d) for d in home.devices)
    assert lamp.mqtt.payloads == {"on": "1", "off": "0"}  # YAML's on/off keys are words here
    assert door.secure and door.entity_id == "lock.front_door" and door.mqtt is None
    assert HomeService.from_settings(home).hass.url == "http://ha.local:8123"


BAD_DEVICES = [
    ("    - {name: a, kind: light, entity_id: light.a, mqtt: {command_topic: a}}\n",
     "home.devices.0: device 'a': give exactly one of 'mqtt' (topics) or 'entity_id' (Home Assistant)"),
    ("    - {name: a, kind: light}\n", "home.devices.0: device 'a': give exactly one of"),
    ("    - {name: a, kind: light, mqtt: {state_topic: a}}\n",
     "home.devices.0: device 'a': a light on MQTT needs mqtt.command_topic"),
    ("    - {name: a, kind: sensor, mqtt: {command_topic: a}}\n",
     "home.devices.0: device 'a': a sensor on MQTT needs mqtt.state_topic"),
    ("    - {name: a, kind: lamp, entity_id: light.a}\n", "home.devices.0.kind: expected one of 'light', "),
    ("    - {nmae: a, kind: light, entity_id: light.a}\n",
     "home.devices.0.nmae: unknown key (did you mean 'name'?)"),
    ("    - {name: a, kind: light, mqtt: {command_topic: a, payloads: {on: ON}}}\n",
     "home.devices.0.mqtt.payloads: the payload for 'on' reads as true/false in YAML: quote it"),
    ("    - {name: a, kind: lock, mqtt: {command_topic: a, payloads: {open: x}}}\n",
     "payloads for open do not apply to a lock (its actions: lock, unlock)"),
    ("    - {name: a, kind: light, mqtt: {command_topic: 'a/#'}}\n",
     "home.devices.0.mqtt.command_topic: expected one exact topic (no + or # wildcards), got 'a/#'"),
    ("    - {name: a, kind: light, entity_id: Light-A}\n", "expected an entity id such as 'light.kitchen'"),
    ("    - {name: Lamp, kind: light, entity_id: light.a}\n"
     "    - {name: b, aliases: [lamps], kind: light, entity_id: light.b}\n",
     "home: the name 'lamps' is used twice (devices 'Lamp' and 'b')"),
]


@pytest.mark.parametrize("devices, message", BAD_DEVICES, ids=[str(i) for i in range(len(BAD_DEVICES))])
def test_a_bad_device_is_named_in_the_users_file(tmp_path, devices, message):
    path = config(tmp_path, devices)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_a_backend_must_be_configured_for_its_devices(tmp_path):
    path = config(tmp_path, "    - {name: a, kind: light, mqtt: {command_topic: a}}\n", mqtt="    host: null\n")
    with pytest.raises(ConfigError, match="device 'a' uses MQTT, but home.mqtt.host is null"):
        load_settings(path)


# ---------------------------------------------------------------------------- the skill


def test_the_bundled_skill_loads_with_its_tiers_and_phrases(tmp_path):
    skillset = load_skills(load_settings(), tmp_path)
    skill = skillset.get("home")
    assert skill is not None and skill.enabled, skill and skill.problems
    assert {t.name: t.risk for t in skill.tools} == {
        "set_device": "write", "set_secure_device": "confirm", "get_device_state": "read", "list_devices": "read",
        "look_at_camera": "read"}
    registry = ToolRegistry()
    skillset.register(registry)
    devices = DeviceRegistry(HOUSE)
    matcher = IntentMatcher.from_skills(skillset, registry, {"device": devices.slot_values(),
                                                             "secure_device": devices.secure_slot_values()})
    assert matcher.problems == []
    match = matcher.match("please turn off the kitchen lights")
    assert (match.tool, match.arguments["device"], match.arguments["state"]) == ("set_device", "kitchen lights", "off")
    assert matcher.match("dim the bedroom lamp to 40 percent").arguments["brightness"] == 40
    assert matcher.match("turn on the garage door") is None  # set_device never names a secure device
    # Locks and covers take the fast path only to the confirm-tier tool, which asks first.
    lock = matcher.match("lock the front door")
    assert (lock.tool, lock.arguments) == ("set_secure_device", {"device": "front door", "action": "lock"})
    assert registry.get("set_secure_device").risk == "confirm"
    assert matcher.match("open the garage door").arguments == {"device": "garage door", "action": "open"}
    assert matcher.match("lock the kitchen plug") is None


def test_slot_values_for_secure_phrases_are_the_devices_that_need_a_yes():
    assert DeviceRegistry(HOUSE).secure_slot_values() == ["oven light", "garage door", "front door"]
