"""Home Assistant backend: pushed states over its websocket, REST over urllib as a fallback.

With a token, a `HassLink` (hass_ws.py) keeps a live cache of every state and carries the
service calls (its errors give Home Assistant's reason). While that link is down, reads and
calls go over REST, whose errors say whether Home Assistant is reachable and takes the token.

Requests follow Home Assistant's documented REST API: `GET /api/states/<entity_id>`,
`GET /api/states`, `POST /api/services/<domain>/<service>`, each with
`Authorization: Bearer <long-lived access token>`. Only entities listed in `home.devices` are
ever read or changed, so the model never sees the rest of the house.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from agent.home_control.devices import DeviceCommand, Device, DeviceState, HomeControlError

log = logging.getLogger(__name__)

SERVICES = {"on": "turn_on", "off": "turn_off", "open": "open_cover", "close": "close_cover",
            "stop": "stop_cover", "lock": "lock", "unlock": "unlock"}
# Attributes worth the model's attention, under the names it is told.
ATTRIBUTES = {"current_temperature": "current_temperature", "temperature": "target_temperature",
              "current_position": "position"}
# Home Assistant is on the home network: never send its token through a proxy from the env.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_token(settings: Any) -> str | None:
    """The long-lived access token from the variable token_env, else token_file; None if neither."""
    value = os.environ.get(settings.token_env, "").strip()
    if value:
        return value
    path = settings.token_file
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HomeControlError(f"cannot read the Home Assistant token file {path}: {exc.strerror}") from None
    if Path(path).stat().st_mode & 0o077:
        log.warning("the Home Assistant token file %s is readable by others; chmod 600 it", path)
    return text or None


class HassBackend:
    """Reads and changes configured Home Assistant entities."""

    name = "hass"

    def __init__(self, settings: Any, devices: Iterable[Device], *, token: str | None):
        self.url = settings.url
        self.timeout_s = settings.timeout_s
        self.token = token
        self.token_hint = f"${settings.token_env}" + (f" or {settings.token_file}" if settings.token_file else "")
        self.devices = {d.entity_id: d for d in devices if d.entity_id}
        self.link = None
        if token and self.url:
            from agent.home_control.hass_ws import HassLink

            self.link = HassLink(self.url, token, timeout_s=settings.timeout_s,
                                 reconnect_min_s=settings.reconnect_min_s,
                                 reconnect_max_s=settings.reconnect_max_s)

    def start(self) -> None:
        """Open the websocket that keeps the state cache (it connects in the background)."""
        if self.link is not None:
            self.link.start()

    def stop(self) -> None:
        if self.link is not None:
            self.link.stop()

    def _live(self) -> bool:
        """Whether the pushed state cache is current (else ask over REST, which says why not)."""
        return self.link is not None and self.link.loaded

    def read(self, devices: list[Device]) -> list[DeviceState]:
        if self._live():
            return [to_state(d, self.link.state(d.entity_id)) for d in devices]
        if len(devices) == 1:
            return [self._state(devices[0])]
        # One request for many: /api/states lists every entity, of which we keep ours.
        try:
            every = {s.get("entity_id"): s for s in self._request("GET", "/api/states") or []}
        except HomeControlError as exc:
            return [DeviceState(d.name, False, reason=str(exc)) for d in devices]
        return [to_state(d, every.get(d.entity_id)) for d in devices]

    def apply(self, changes: list[tuple[Device, DeviceCommand]]) -> list[DeviceState]:
        results = []
        for device, command in changes:
            try:
                results.append(self._call(device, command))
            except HomeControlError as exc:
                results.append(DeviceState(device.name, False, reason=str(exc)))
        return results

    def _state(self, device: Device) -> DeviceState:
        try:
            return to_state(device, self._request("GET", f"/api/states/{device.entity_id}", device=device))
        except HomeControlError as exc:
            return DeviceState(device.name, False, reason=str(exc))

    def _call(self, device: Device, command: DeviceCommand) -> DeviceState:
        domain, entity_id = device.entity_id.split(".")[0], device.entity_id
        if self._live():
            for service, data in _services(command):
                try:
                    self.link.command("call_service", domain=domain, service=service,
                                      service_data=data, target={"entity_id": entity_id})
                except HomeControlError as exc:
                    raise HomeControlError(f"{exc} (device {device.name!r}, {domain}.{service})") from None
            # Pushed changes arrive before the call's result, so the cache is already current.
            return to_state(device, self.link.state(entity_id))
        changed: list = []
        for service, data in _services(command):
            changed += self._service(device, domain, service, data)
        # The service's answer lists the states it changed; an entity that was already in
        # the wanted state is not among them, so then ask for it.
        mine = [s for s in changed if isinstance(s, dict) and s.get("entity_id") == entity_id]
        return to_state(device, mine[-1]) if mine else self._state(device)

    def _service(self, device: Device, domain: str, service: str, data: dict) -> list:
        body = {"entity_id": device.entity_id, **data}
        answer = self._request("POST", f"/api/services/{domain}/{service}", body, device=device)
        return answer if isinstance(answer, list) else []

    def camera_image(self, device: Device, max_bytes: int, timeout_s: float) -> tuple[bytes, str]:
        """A camera entity's current picture and its content type, through `/api/camera_proxy`;
        HomeControlError when Home Assistant cannot give one or it exceeds max_bytes."""
        path = f"/api/camera_proxy/{device.entity_id}"
        raw, content_type = self._fetch("GET", path, device=device, limit=max_bytes, timeout_s=timeout_s)
        if len(raw) > max_bytes:
            raise HomeControlError(f"the picture from {device.entity_id} is over home.cameras.max_snapshot_bytes "
                                   f"({max_bytes} bytes)")
        return raw, content_type

    def _request(self, method: str, path: str, body: Any = None, *, device: Device | None = None) -> Any:
        raw, _ = self._fetch(method, path, body, device=device)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise HomeControlError(f"Home Assistant at {self.url} sent something other than JSON for {path}") from None

    def _fetch(self, method: str, path: str, body: Any = None, *, device: Device | None = None,
               limit: int | None = None, timeout_s: float | None = None) -> tuple[bytes, str]:
        """The answer's bytes (at most limit + 1 of them) and its content type."""
        if not self.token:
            raise HomeControlError(f"no Home Assistant access token: put a long-lived token in {self.token_hint}")
        request = urllib.request.Request(
            self.url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=timeout_s or self.timeout_s) as response:
                raw = response.read() if limit is None else response.read(limit + 1)
                return raw, response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise self._refused(exc, path, device) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HomeControlError(f"cannot reach Home Assistant at {self.url}: {reason}; is it running?") from None

    def _refused(self, exc: urllib.error.HTTPError, path: str, device: Device | None) -> HomeControlError:
        who = f" (device {device.name!r})" if device else ""
        if exc.code == 401:
            return HomeControlError(f"Home Assistant refused the access token (401): put a valid long-lived "
                             f"token in {self.token_hint}")
        if exc.code == 404 and path.startswith("/api/states/"):
            return HomeControlError(f"Home Assistant has no entity {path.rsplit('/', 1)[-1]}{who}: check its "
                             "entity_id in home.devices")
        if path.startswith("/api/camera_proxy/") and exc.code in (404, 500, 503):
            # 404: no such camera entity; 500/503: the camera exists but gave no picture
            why = "has no camera" if exc.code == 404 else f"could not get a picture ({exc.code}) from"
            return HomeControlError(f"Home Assistant {why} {path.rsplit('/', 1)[-1]}{who}"
                                    + (": check its entity_id in home.devices" if exc.code == 404 else ""))
        if exc.code in (400, 404) and path.startswith("/api/services/"):
            detail = exc.read().decode("utf-8", "replace").strip()[:200]
            service = path[len("/api/services/"):].replace("/", ".")
            return HomeControlError(f"Home Assistant refused {service}{who}: {detail or exc.reason}")
        return HomeControlError(f"Home Assistant answered {exc.code} {exc.reason} for {path}{who}")


def _services(command: DeviceCommand) -> list[tuple[str, dict]]:
    """The service calls (name, data) that carry out a command, in order."""
    calls = []
    if command.temperature is not None:
        calls.append(("set_temperature", {"temperature": command.temperature}))
    if command.action or command.brightness is not None:
        data = {} if command.brightness is None else {"brightness_pct": command.brightness}
        calls.append((SERVICES[command.action or "on"], data))
    return calls


def to_state(device: Device, data: dict | None) -> DeviceState:
    """A DeviceState from a Home Assistant state object; unavailable/unknown stay unavailable."""
    if not data:
        return DeviceState(device.name, False, reason=f"Home Assistant has no entity {device.entity_id}")
    state = data.get("state")
    if state in (None, "unavailable", "unknown"):
        return DeviceState(device.name, False, reason=f"Home Assistant reports {device.entity_id} as {state}")
    attrs = data.get("attributes") or {}
    shown = {ATTRIBUTES[k]: v for k, v in attrs.items() if k in ATTRIBUTES and v is not None}
    if isinstance(attrs.get("brightness"), (int, float)):
        shown = {"brightness": f"{round(attrs['brightness'] * 100 / 255)}%", **shown}
    unit = attrs.get("unit_of_measurement") or device.unit
    if device.kind == "sensor" and unit:
        state = f"{state} {unit}"
    return DeviceState(device.name, True, str(state), shown)


def probe(settings: Any) -> str:
    """One line on the configured Home Assistant (version, state); a HomeControlError saying what is wrong."""
    backend = HassBackend(settings, [], token=read_token(settings))
    answer = backend._request("GET", "/api/config") or {}
    return (f"Home Assistant {answer.get('version', '?')} at {settings.url} takes the token "
            f"({answer.get('state', 'state unknown')})")
