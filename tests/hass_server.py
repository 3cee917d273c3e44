"""A real Home Assistant 2024.3.3 for tests, on 127.0.0.1 and a free port.

`HassServer(folder).start()` writes a configuration that needs no network (template lights
and locks over input_booleans: instant and predictable; the `demo` integration: slow locks,
a lock that jams, covers, a thermostat, cameras; a `local_file` camera showing the picture
PORCH_PICTURE), starts Home Assistant from the venv that `tests/hass_setup.py` builds under
`.cache/` (with `--skip-pip`: it installs nothing), gets a long-lived token through the public onboarding and auth APIs (no web UI), and waits until
`/api/config` says RUNNING. `stop()` ends it by its pid; `start()` again brings it back on
the same port, with the same token.

`hass` (a pytest fixture, one server per test module) skips the tests with the reason only
when the venv cannot be built (no package registry).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from cameras import picture
from hass_setup import ensure_hass, is_built
from mosquitto import HOST, free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PORCH_PICTURE = "porch.jpg"  # in the server's folder: what camera.porch (local_file) shows

# Template entities over input_booleans: they change the instant they are asked, so a test
# can wait on a real pushed state without racing a simulated motor.
CONFIG = """\
homeassistant:
  name: Test Home
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: {host}
  server_port: {port}
api:
websocket_api:
config:
demo:
input_boolean:
  kitchen_power: {{name: Kitchen power}}
  hall_power: {{name: Hall power}}
  shed_bolt: {{name: Shed bolt}}
  hall_motion: {{name: Hall motion}}
input_number:
  kitchen_level: {{name: Kitchen level, min: 0, max: 255, step: 1, initial: 255}}
light:
  - platform: template
    lights:
      kitchen:
        friendly_name: Kitchen light
        unique_id: tmpl_kitchen_light
        value_template: "{{{{ is_state('input_boolean.kitchen_power', 'on') }}}}"
        level_template: "{{{{ states('input_number.kitchen_level') | int(0) }}}}"
        turn_on:
          service: input_boolean.turn_on
          target: {{entity_id: input_boolean.kitchen_power}}
        turn_off:
          service: input_boolean.turn_off
          target: {{entity_id: input_boolean.kitchen_power}}
        set_level:
          - service: input_number.set_value
            target: {{entity_id: input_number.kitchen_level}}
            data: {{value: "{{{{ brightness }}}}"}}
          - service: input_boolean.turn_on
            target: {{entity_id: input_boolean.kitchen_power}}
      hall:
        friendly_name: Hall light
        unique_id: tmpl_hall_light
        value_template: "{{{{ is_state('input_boolean.hall_power', 'on') }}}}"
        turn_on:
          service: input_boolean.turn_on
          target: {{entity_id: input_boolean.hall_power}}
        turn_off:
          service: input_boolean.turn_off
          target: {{entity_id: input_boolean.hall_power}}
camera:
  - platform: local_file
    name: Porch
    file_path: {folder}/porch.jpg
lock:
  - platform: template
    name: Shed door
    unique_id: tmpl_shed_door
    value_template: "{{{{ is_state('input_boolean.shed_bolt', 'on') }}}}"
    lock:
      service: input_boolean.turn_on
      target: {{entity_id: input_boolean.shed_bolt}}
    unlock:
      service: input_boolean.turn_off
      target: {{entity_id: input_boolean.shed_bolt}}
"""


class HassServer:
    """One Home Assistant process with its own config folder; restartable on the same port."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = self.folder / "home-assistant.log"
        self.process: subprocess.Popen | None = None
        self.token: str | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / PORCH_PICTURE).write_bytes(picture(80, 60, (40, 200, 40)))
        (self.folder / "configuration.yaml").write_text(CONFIG.format(host=HOST, port=self.port, folder=self.folder),
                                                         encoding="utf-8")

    def start(self, timeout_s: float = 90.0) -> "HassServer":
        python = ensure_hass()
        with open(self.folder / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                [str(python), "-m", "homeassistant", "--config", str(self.folder), "--skip-pip",
                 "--log-file", str(self.log), "--log-no-color"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        if self.token is None:
            self._wait(lambda: self._onboard(), deadline)
        self._wait(lambda: self.rest("GET", "/api/config").get("state") == "RUNNING", deadline)
        return self

    def _wait(self, ready, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited ({self.process.returncode}): {self.log_tail()}")
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Home Assistant did not get ready at {self.url}: {self.log_tail()}")
            time.sleep(0.1)

    def _onboard(self) -> bool:
        """The first user (gives an auth code) -> an access token -> a long-lived token."""
        client_id = self.url + "/"
        answer = self._post_json("/api/onboarding/users", {
            "client_id": client_id, "name": "Test", "username": "test",
            "password": "test-password", "language": "en"})
        form = urllib.parse.urlencode({"grant_type": "authorization_code",
                                       "code": answer["auth_code"], "client_id": client_id})
        with _OPENER.open(urllib.request.Request(self.url + "/auth/token", data=form.encode()),
                          timeout=10) as response:
            access = json.loads(response.read())["access_token"]
        self.token = access
        self.token = self.ws("auth/long_lived_access_token", client_name="agentd tests",
                             lifespan=3650)
        return True

    def _post_json(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=10) as response:
            return json.loads(response.read())

    def rest(self, method: str, path: str, body: dict | None = None):
        """One authorised REST request; the decoded JSON answer."""
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with _OPENER.open(request, timeout=15) as response:
            return json.loads(response.read() or b"null")

    def ws(self, kind: str, **fields):
        """One websocket command on a fresh connection; its result (a RuntimeError if it failed)."""
        with connect(self.url.replace("http", "ws", 1) + "/api/websocket", open_timeout=10) as sock:
            json.loads(sock.recv(10))  # auth_required
            sock.send(json.dumps({"type": "auth", "access_token": self.token}))
            if json.loads(sock.recv(10))["type"] != "auth_ok":
                raise RuntimeError("Home Assistant refused the test token")
            sock.send(json.dumps({"id": 1, "type": kind, **fields}))
            answer = json.loads(sock.recv(30))
        if not answer.get("success"):
            raise RuntimeError(f"{kind}: {answer.get('error')}")
        return answer.get("result")

    def call(self, domain: str, service: str, **data) -> None:
        """Call a service (to arrange a test), blocking until it is done."""
        self.rest("POST", f"/api/services/{domain}/{service}", data)

    def state(self, entity_id: str) -> str:
        return self.rest("GET", f"/api/states/{entity_id}")["state"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return text[-3000:] or "(no log)"


@pytest.fixture(scope="module")
def hass(tmp_path_factory):
    """A running Home Assistant for the whole test module, stopped after it."""
    if not is_built():
        try:
            ensure_hass()
        except Exception as exc:  # no registry: the rest of the suite still runs
            pytest.skip(f"cannot build Home Assistant's venv (python tests/hass_setup.py): {exc}")
    server = HassServer(tmp_path_factory.mktemp("hass")).start()
    yield server
    server.stop()
