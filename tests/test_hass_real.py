"""Home control against a real Home Assistant 2024.3.3 (tests/hass_server.py), one per module.

The home skill's tools run unchanged on a HomeService whose Home Assistant backend keeps its
state cache over the websocket: template lights and a template lock (instant), the demo's
locks (two seconds to move; one jams), covers (they move step by step) and a thermostat.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path

import pytest

from agent.actions import Action, Executor
from agent.home_control import HomeControlError, start_home
from agent.config.settings import load_settings
from agent.tools import ToolContext, ToolRegistry
from hass_server import hass  # noqa: F401  (a fixture)

SKILL_TOOLS = Path(__file__).resolve().parent.parent / "skills" / "home" / "tools.py"
_spec = importlib.util.spec_from_file_location("home_skill_tools_under_test_hass_real", SKILL_TOOLS)
tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tools)

TOKEN_ENV = "AGENTD_TEST_HASS_TOKEN"
DEVICES = [
    {"name": "kitchen light", "room": "kitchen", "kind": "light", "entity_id": "light.kitchen"},
    {"name": "hall light", "room": "hall", "kind": "light", "entity_id": "light.hall"},
    {"name": "shed door", "room": "garden", "kind": "lock", "entity_id": "lock.shed_door"},
    {"name": "front door", "room": "hall", "kind": "lock", "entity_id": "lock.front_door"},
    {"name": "side door", "room": "hall", "kind": "lock", "entity_id": "lock.poorly_installed_door"},
    {"name": "kitchen blind", "room": "kitchen", "kind": "cover", "entity_id": "cover.kitchen_window"},
    {"name": "thermostat", "room": "living room", "kind": "climate", "entity_id": "climate.hvac"},
    {"name": "garden light", "room": "garden", "kind": "light", "entity_id": "light.nowhere"},
    # A light's entity configured as a thermostat: Home Assistant refuses set_temperature.
    {"name": "odd heater", "kind": "climate", "entity_id": "light.bed_light"},
]


def settings_for(server, **hass_settings):
    hass_settings = {"url": server.url, "token_env": TOKEN_ENV, "reconnect_min_s": 0.1,
                     "reconnect_max_s": 0.5, **hass_settings}
    return load_settings(overrides={"home": {"hass": hass_settings, "devices": DEVICES}})


@pytest.fixture
def home(hass, monkeypatch):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, hass.token)
    service = start_home(settings_for(hass))
    assert service.hass.link.wait_loaded(10), service.hass.link.problem
    yield service
    service.stop()


def on(service) -> ToolContext:
    """The tool context the executor builds, with the home service handed in."""
    return ToolContext(home_control=service)


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_states_come_from_the_pushed_cache(home, hass):  # noqa: F811
    hass.call("input_boolean", "turn_on", entity_id="input_boolean.hall_power")
    # No request of agentd's: the change arrives over the websocket by itself.
    until(lambda: home.hass.link.state("light.hall")["state"] == "on", timeout=2)
    assert tools.get_device_state(on(home), "hall light") == "hall light is on"
    hass.call("input_boolean", "turn_off", entity_id="input_boolean.hall_power")
    until(lambda: tools.get_device_state(on(home), "hall light") == "hall light is off", timeout=2)
    listed = tools.list_devices(on(home), "living room")
    assert listed == "thermostat (climate in the living room): cool (current temperature 22, target temperature 21)"


def test_switching_and_dimming_change_home_assistant(home, hass):  # noqa: F811
    assert tools.set_device(on(home), "kitchen light", "on") == "kitchen light is on (brightness 100%)"
    assert hass.state("input_boolean.kitchen_power") == "on"
    assert tools.set_device(on(home), "kitchen light", brightness=40).startswith("kitchen light is on (brightness 40%")
    assert hass.state("input_number.kitchen_level") == "102.0"  # 40 % of 255
    assert tools.set_device(on(home), "kitchen light", "off") == "kitchen light is off"
    assert hass.state("light.kitchen") == "off"


def test_a_lock_needs_the_confirm_tier_and_a_yes(home, hass):  # noqa: F811
    with pytest.raises(HomeControlError, match="set_secure_device"):
        tools.set_device(on(home), "shed door", "on")
    registry = ToolRegistry()
    registry.add_module(tools)
    executor = Executor(registry, home_control=home)

    async def answer(yes):
        async def approve(tool, arguments):
            return yes
        return await executor.run(Action(tool="set_secure_device",
                                         arguments={"device": "shed door", "action": "lock"}),
                                  approve=approve)

    denied = asyncio.run(answer(False))
    assert denied.status == "denied" and hass.state("lock.shed_door") == "unlocked"
    done = asyncio.run(answer(True))
    assert (done.status, done.result) == ("ok", "shed door is locked")
    assert hass.state("lock.shed_door") == "locked"


def test_a_slow_lock_is_waited_for_and_a_jammed_one_says_so(home, hass):  # noqa: F811
    started = time.monotonic()
    assert tools.set_secure_device(on(home), "front door", "unlock") == "front door is unlocked"
    assert time.monotonic() - started >= 1.5  # the demo lock takes two seconds to turn
    assert tools.set_secure_device(on(home), "side door", "lock") == "side door is jammed"
    assert tools.get_device_state(on(home), "side door") == "side door is jammed"


def test_a_cover_moves_and_its_progress_is_pushed(home, hass):  # noqa: F811
    assert tools.set_secure_device(on(home), "kitchen blind", "close") in ("kitchen blind is closing",
                                                                 "kitchen blind is closed")
    until(lambda: tools.get_device_state(on(home), "kitchen blind").startswith("kitchen blind is closed"), timeout=20)
    assert hass.state("cover.kitchen_window") == "closed"


def test_a_thermostat_takes_a_temperature(home, hass):  # noqa: F811
    assert "target temperature 23" in tools.set_device(on(home), "thermostat", temperature=23)
    assert hass.rest("GET", "/api/states/climate.hvac")["attributes"]["temperature"] == 23


def test_home_assistant_errors_reach_the_model_with_their_reason(home):
    assert tools.get_device_state(on(home), "garden light") == (
        "garden light is unavailable: Home Assistant has no entity light.nowhere")
    # A service naming an unknown entity succeeds in Home Assistant (it only logs): the state says.
    assert tools.set_device(on(home), "garden light", "on") == (
        "garden light is unavailable: Home Assistant has no entity light.nowhere")
    # REST would answer a bare "400: Bad Request"; the websocket says why.
    refused = tools.set_device(on(home), "odd heater", temperature=20)
    assert refused.startswith("odd heater is unavailable: Home Assistant refused call_service: ")
    assert "set_temperature" in refused and "(device 'odd heater', light.set_temperature)" in refused


def test_a_bad_token_is_refused_with_what_to_do(hass, monkeypatch):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, "not-a-token")
    service = start_home(settings_for(hass))
    try:
        assert not service.hass.link.wait_loaded(1)
        assert "refused the access token" in service.hass.link.problem
        assert tools.get_device_state(on(service), "hall light") == (
            "hall light is unavailable: Home Assistant refused the access token (401): put a valid "
            f"long-lived token in ${TOKEN_ENV}")
    finally:
        service.stop()


def test_home_assistant_stopping_mid_call_and_coming_back(home, hass):  # noqa: F811
    tools.set_secure_device(on(home), "front door", "lock")
    outcome = {}
    turning = threading.Thread(target=lambda: outcome.update(text=tools.set_secure_device(on(home), "front door", "unlock")))
    turning.start()
    time.sleep(0.5)  # the lock is turning (two seconds) when Home Assistant goes
    hass.stop()
    turning.join(15)
    assert not turning.is_alive()
    assert outcome["text"].startswith("front door is unavailable: ")
    until(lambda: not home.hass.link.loaded, timeout=5)
    assert tools.get_device_state(on(home), "hall light").startswith(
        f"hall light is unavailable: cannot reach Home Assistant at {hass.url}")
    hass.start()
    assert home.hass.link.wait_loaded(15), home.hass.link.problem  # reconnected by itself
    assert tools.set_device(on(home), "hall light", "on") == "hall light is on"


# -- cameras ---------------------------------------------------------------------------------

CAMERAS = [
    {"name": "porch camera", "room": "porch", "kind": "camera", "entity_id": "camera.porch"},  # local_file
    {"name": "demo camera", "kind": "camera", "entity_id": "camera.demo_camera"},
    {"name": "lost camera", "kind": "camera", "entity_id": "camera.nowhere"},
]


def camera_look(service, vision, camera):
    registry = ToolRegistry()
    registry.add_module(tools)
    action = Action(tool="look_at_camera", arguments={"camera": camera, "question": "What is there?"})
    return asyncio.run(Executor(registry, home_control=service, vision=vision).run(action))


def test_a_home_assistant_camera_is_seen_through_camera_proxy(hass, monkeypatch, tmp_path):  # noqa: F811
    from cameras import SeeingScript
    from hass_server import PORCH_PICTURE

    monkeypatch.setenv(TOKEN_ENV, hass.token)
    settings = load_settings(overrides={"home": {"hass": {"url": hass.url, "token_env": TOKEN_ENV},
                                                 "devices": CAMERAS}})
    service = start_home(settings, snapshots_dir=tmp_path / "snapshots")
    vision = SeeingScript("A green wall.")
    try:
        assert service.hass.link.wait_loaded(10), service.hass.link.problem
        porch = camera_look(service, vision, "porch")
        hass.call("camera", "turn_off", entity_id="camera.demo_camera")  # returns once it is off
        try:
            off = camera_look(service, vision, "demo camera")
        finally:
            hass.call("camera", "turn_on", entity_id="camera.demo_camera")
        lost = camera_look(service, vision, "lost camera")
        listing = tools.list_devices(on(service), "porch")
    finally:
        service.stop()
    assert porch.ok and porch.result.startswith("A green wall.\n(porch camera: ")
    assert "JPEG from Home Assistant camera.porch" in porch.result
    [(size, centre, _)] = vision.seen  # the file Home Assistant serves, byte for byte a real JPEG
    assert size == (80, 60) and centre[1] > 150 and (hass.folder / PORCH_PICTURE).exists()
    assert "Home Assistant could not get a picture (503) from camera.demo_camera" in off.result
    assert "Home Assistant has no camera camera.nowhere (device 'lost camera')" in lost.result
    assert listing == "porch camera (camera in the porch): idle"
    assert not (tmp_path / "snapshots").exists()


def test_a_camera_whose_home_assistant_is_down_says_so(monkeypatch):
    from cameras import SeeingScript
    from mosquitto import free_port

    monkeypatch.setenv(TOKEN_ENV, "a-token")
    url = f"http://127.0.0.1:{free_port()}"
    settings = load_settings(overrides={"home": {"hass": {"url": url, "token_env": TOKEN_ENV},
                                                 "devices": CAMERAS[:1]}})
    service = start_home(settings)
    try:
        outcome = camera_look(service, SeeingScript(), "porch camera")
    finally:
        service.stop()
    assert outcome.status == "error" and f"cannot reach Home Assistant at {url}" in outcome.result
