"""The REST fallback (the websocket is down), against a local stand-in server.

Everything a real Home Assistant shows is tested against one in tests/test_hass_real.py.
What it cannot show is agentd over REST alone with the requests it sends: the stand-in
(stdlib http.server on 127.0.0.1) has no websocket, so every read and call goes the REST
way. It follows the documented REST API: bearer-token auth, `GET /api/states`,
`GET /api/states/<entity_id>` (404 for an unknown entity), and
`POST /api/services/<domain>/<service>`, which answers with the states it changed.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.home_control import HomeControlError, start_home
from agent.config.settings import ConfigError, load_settings
from agent.tools import ToolContext

SKILL_TOOLS = Path(__file__).resolve().parent.parent / "skills" / "home" / "tools.py"
_spec = importlib.util.spec_from_file_location("home_skill_tools_under_test_hass", SKILL_TOOLS)
tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tools)

TOKEN = "long-lived-test-token"
TOKEN_ENV = "AGENTD_TEST_HASS_TOKEN"

DEVICES = [
    {"name": "living room lamp", "room": "living room", "kind": "light", "entity_id": "light.living_room"},
    {"name": "outside temperature", "kind": "sensor", "entity_id": "sensor.outside_temperature"},
    {"name": "thermostat", "room": "living room", "kind": "climate", "entity_id": "climate.living_room"},
    {"name": "front door", "room": "hall", "kind": "lock", "entity_id": "lock.front_door"},
    {"name": "garden light", "kind": "light", "entity_id": "light.garden"},  # not in HA
]
# What each service does to an entity's state (the few this stand-in knows).
EFFECTS = {"turn_on": "on", "turn_off": "off", "lock": "locked", "unlock": "unlocked",
           "open_cover": "open", "close_cover": "closed"}


def state(entity_id: str, value: str, **attributes) -> dict:
    """A state object shaped like Home Assistant's."""
    now = datetime.now(timezone.utc).isoformat()
    return {"entity_id": entity_id, "state": value, "attributes": attributes, "last_changed": now,
            "last_updated": now, "context": {"id": "01J0000000000000000000000", "parent_id": None, "user_id": None}}


class FakeHass(ThreadingHTTPServer):
    """Enough of Home Assistant's REST API for agentd's backend, recording every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list[tuple[str, str, dict | None]] = []
        self.states = {s["entity_id"]: s for s in [
            state("light.living_room", "off", friendly_name="Living room", supported_color_modes=["brightness"]),
            state("sensor.outside_temperature", "12.5", unit_of_measurement="°C", device_class="temperature"),
            state("climate.living_room", "heat", current_temperature=19.5, temperature=20, hvac_modes=["off", "heat"]),
            state("lock.front_door", "unavailable", friendly_name="Front door"),
            state("light.secret_room", "on", friendly_name="Secret room"),  # not in agentd's config
        ]}
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def calls(self) -> list[tuple[str, str, dict | None]]:
        """The REST requests so far, less the websocket's tries to connect (refused here)."""
        return [r for r in self.requests if r[1] != "/api/websocket"]


class _Handler(BaseHTTPRequestHandler):
    server: FakeHass

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, body: dict | None) -> bool:
        self.server.requests.append((self.command, self.path, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, "401: Unauthorized", "text/plain")
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized(None):
            return
        if self.path == "/api/":
            self._send(200, {"message": "API running."})
        elif self.path == "/api/states":
            self._send(200, list(self.server.states.values()))
        elif self.path.startswith("/api/states/") and self.path[12:] in self.server.states:
            self._send(200, self.server.states[self.path[12:]])
        else:
            self._send(404, {"message": "Entity not found."})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self._authorized(body):
            return
        domain, _, service = self.path.removeprefix("/api/services/").partition("/")
        old = self.server.states.get(body.get("entity_id"))
        if old is None or not old["entity_id"].startswith(domain + "."):
            self._send(400, {"message": f"Service {domain}.{service} not found or bad entity."})
            return
        new = state(old["entity_id"], EFFECTS.get(service, old["state"]), **old["attributes"])
        if "brightness_pct" in body:
            new["attributes"]["brightness"] = round(body["brightness_pct"] * 255 / 100)
        if service == "set_temperature":
            new["attributes"]["temperature"] = body["temperature"]
        self.server.states[new["entity_id"]] = new
        self._send(200, [new])


@pytest.fixture
def hass():
    server = FakeHass()
    yield server
    server.shutdown()
    server.server_close()


def start(hass: FakeHass, **hass_settings):
    settings = load_settings(overrides={"home": {
        "hass": {"url": hass.url, "token_env": TOKEN_ENV, **hass_settings}, "devices": DEVICES}})
    return start_home(settings)


def on(service) -> ToolContext:
    """The tool context the executor builds, with the home service handed in."""
    return ToolContext(home_control=service)


@pytest.fixture
def home(hass, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    service = start(hass)
    yield service
    service.stop()


def test_dimming_a_light_calls_the_light_service_with_the_token(home, hass):
    assert tools.set_device(on(home), "living room lamp", brightness=40) == "living room lamp is on (brightness 40%)"
    assert hass.calls()[-1] == ("POST", "/api/services/light/turn_on",
                                 {"entity_id": "light.living_room", "brightness_pct": 40})
    assert tools.set_device(on(home), "living room lamp", "off") == "living room lamp is off (brightness 40%)"
    assert hass.calls()[-1][1] == "/api/services/light/turn_off"


def test_a_sensor_reads_with_its_unit(home):
    assert tools.get_device_state(on(home), "outside temperature") == "outside temperature is 12.5 °C"


def test_a_thermostat_takes_a_temperature(home, hass):
    result = tools.set_device(on(home), "thermostat", temperature=21.5)
    assert hass.calls()[-1] == ("POST", "/api/services/climate/set_temperature",
                                 {"entity_id": "climate.living_room", "temperature": 21.5})
    assert result == "thermostat is heat (current temperature 19.5, target temperature 21.5)"


def test_only_configured_entities_are_visible(home, hass):
    listing = tools.list_devices(on(home))
    assert "secret" not in listing.lower()
    assert listing.splitlines()[0] == "living room lamp (light in the living room): off"
    assert [r[1] for r in hass.calls() if r[0] == "GET"][-1] == "/api/states"  # one request for all
    with pytest.raises(HomeControlError, match="no device or room called 'secret room'"):
        tools.get_device_state(on(home), "secret room")
    with pytest.raises(HomeControlError, match="no device or room"):
        tools.set_device(on(home), "light.secret_room", "off")
    assert hass.states["light.secret_room"]["state"] == "on"


def test_unavailable_and_missing_entities_are_reported_as_such(home):
    assert tools.get_device_state(on(home), "front door") == (
        "front door is unavailable: Home Assistant reports lock.front_door as unavailable")
    assert tools.get_device_state(on(home), "garden light") == (
        "garden light is unavailable: Home Assistant has no entity light.garden (device 'garden light'): "
        "check its entity_id in home.devices")


def test_the_token_can_come_from_a_file(hass, tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token_file = tmp_path / "hass_token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    service = start(hass, token_file=str(token_file))
    try:
        assert tools.get_device_state(on(service), "outside temperature") == "outside temperature is 12.5 °C"
    finally:
        service.stop()


def test_a_missing_or_wrong_token_says_where_to_put_one(hass, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    service = start(hass)
    try:
        assert tools.get_device_state(on(service), "living room lamp") == (
            f"living room lamp is unavailable: no Home Assistant access token: put a long-lived token in ${TOKEN_ENV}")
        monkeypatch.setenv(TOKEN_ENV, "stale")
    finally:
        service.stop()
    service = start(hass)
    try:
        assert "refused the access token (401)" in tools.get_device_state(on(service), "living room lamp")
    finally:
        service.stop()


def test_the_token_is_never_read_from_the_yaml(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("home:\n  hass:\n    token: abc\n")
    with pytest.raises(ConfigError, match=r"home\.hass\.token: unknown key \(did you mean 'token_env'\?\)"):
        load_settings(config)
