"""The home service: the configured devices and the backends that reach them.

The daemon starts one with `start_home(settings)` and stops it on shutdown; the home skill's
tools get it handed in as `ctx.home_control` (the agent's executor puts it in their
ToolContext), so a test builds one and hands it in the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.home_control.cameras import Cameras
from agent.home_control.devices import DeviceCommand, Device, DeviceRegistry, DeviceState, HomeControlError, Match

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What the service needs from MQTT or Home Assistant."""

    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def read(self, devices: list[Device]) -> list[DeviceState]: ...
    def apply(self, changes: list[tuple[Device, DeviceCommand]]) -> list[DeviceState]: ...


@dataclass(frozen=True)
class ChangeResult:
    """What a change did: the devices' states after it, and the devices it left alone because
    they need set_secure_device (a person's yes)."""

    states: list[DeviceState]
    skipped: list[str] = field(default_factory=list)  # device names

    @property
    def confirmed(self) -> bool:
        """Whether every device reported a state and none was left alone."""
        return not self.skipped and all(s.available and s.state is not None for s in self.states)


class HomeService:
    """Finds devices by name or room and reads or changes them through their backend."""

    def __init__(self, registry: DeviceRegistry, *, mqtt: Backend | None = None, hass: Backend | None = None,
                 cameras: Cameras | None = None):
        self.registry = registry
        self.mqtt, self.hass = mqtt, hass
        self.cameras = cameras or Cameras(mqtt=mqtt, hass=hass)

    @classmethod
    def from_settings(cls, home: Any, *, snapshots_dir: Path | None = None) -> "HomeService":
        """Build (not start) the service from the validated `home` settings section; kept
        camera snapshots go to `snapshots_dir` (None: none are kept)."""
        devices = [Device.from_settings(d) for d in home.devices]
        mqtt = hass = None
        if any(d.mqtt for d in devices):  # paho is imported only when MQTT is in use
            from agent.home_control.mqtt import MqttBackend

            password = os.environ.get(home.mqtt.password_env) if home.mqtt.password_env else None
            if home.mqtt.password_env and password is None:
                log.warning("home.mqtt.password_env names $%s, which is not set", home.mqtt.password_env)
            mqtt = MqttBackend(home.mqtt, devices, password=password,
                               max_picture_bytes=home.cameras.max_snapshot_bytes)
        if any(d.entity_id for d in devices):
            from agent.home_control.hass import HassBackend, read_token

            try:
                token = read_token(home.hass)
            except HomeControlError as exc:  # agentd still runs; the tools say there is no token
                log.warning("%s", exc)
                token = None
            hass = HassBackend(home.hass, devices, token=token)
            if hass.token is None:
                log.warning("Home Assistant devices are configured, but there is no token in %s", hass.token_hint)
        cameras = Cameras(home.cameras, mqtt=mqtt, hass=hass, snapshots_dir=snapshots_dir)
        return cls(DeviceRegistry(devices), mqtt=mqtt, hass=hass, cameras=cameras)

    def _backends(self) -> list[Backend]:
        return [b for b in (self.mqtt, self.hass) if b is not None]

    def start(self) -> None:
        for backend in self._backends():
            backend.start()

    def stop(self) -> None:
        """Stop the backends."""
        for backend in self._backends():
            backend.stop()

    def _backend(self, device: Device) -> Backend:
        backend = self.mqtt if device.mqtt is not None else self.hass
        if backend is None:  # only when a test builds a service by hand
            raise HomeControlError(f"{device.name} has no backend to reach it")
        return backend

    # -- reading -------------------------------------------------------------------------

    def read(self, target: str) -> list[DeviceState]:
        """The states of the device(s) a name, room or "room kind" stands for."""
        return self.states(list(self.registry.find(target).devices))

    def states(self, devices: list[Device]) -> list[DeviceState]:
        """States of the given devices in their order, asking each backend once."""
        found: dict[str, DeviceState] = {d.name: self.cameras.state(d) for d in devices if d.kind == "camera"}
        for backend in self._backends():
            mine = [d for d in devices if d.kind != "camera" and self._backend(d) is backend]
            if mine:
                found.update((s.device, s) for s in backend.read(mine))
        return [found[d.name] for d in devices]

    def camera_lines(self) -> list[str]:
        """One short line per camera for `agentd status` (from what is known; it never waits)."""
        return [f"{d.name}: {self.cameras.brief(d)}" for d in self.registry if d.kind == "camera"]

    # -- changing ------------------------------------------------------------------------

    def set(self, target: str, command: DeviceCommand, *, secure: bool = False) -> ChangeResult:
        """Change the device(s) named by target; a secure device only when `secure` is true."""
        if command.brightness == 0 and command.action in (None, "on"):
            command = DeviceCommand("off")  # 0% is off, and a light that is off has no brightness
        elif command.brightness and command.action is None:
            command = DeviceCommand("on", command.brightness, command.temperature)  # dimming turns it on
        match = self.registry.find(target)
        devices, skipped = self._targets(match, command, secure)
        changes = [(d, command) for d in devices]
        states: dict[str, DeviceState] = {}
        for backend in self._backends():
            mine = [(d, c) for d, c in changes if self._backend(d) is backend]
            if mine:
                states.update((s.device, s) for s in backend.apply(mine))
        return ChangeResult([states[d.name] for d in devices], skipped)

    def _targets(self, match: Match, command: DeviceCommand, secure: bool) -> tuple[list[Device], list[str]]:
        if not match.group:
            device = match.devices[0]
            if device.secure and not secure:
                why = "is marked confirm" if device.confirm else f"is a {device.kind}"
                raise HomeControlError(f"{device.name} {why}: change it with set_secure_device, which asks "
                                "the person first")
            problem = _unfit(device, command)
            if problem:
                raise HomeControlError(problem)
            return [device], []
        if secure:
            names = ", ".join(d.name for d in match.devices)
            raise HomeControlError(f"set_secure_device changes one device at a time, so the person knows "
                            f"what they agree to: name one of {names}")
        fit = [d for d in match.devices if not _unfit(d, command)]
        if not fit:
            kinds = ", ".join(d.describe() for d in match.devices)
            raise HomeControlError(f"nothing in {match.label!r} can do {command.text()!r} (there: {kinds})")
        return [d for d in fit if not d.secure], [d.name for d in fit if d.secure]


def _unfit(device: Device, command: DeviceCommand) -> str | None:
    """Why a device cannot carry out a command, or None if it can."""
    if device.kind == "sensor":
        return f"{device.name} is a sensor: it can only be read"
    if device.kind == "camera":
        return f"{device.name} is a camera: it can only be looked at (look_at_camera)"
    if command.action and command.action not in device.actions:
        return f"{device.name} is a {device.kind}: it can {' or '.join(device.actions)}, not {command.action}"
    if command.brightness is not None and device.kind != "light":
        return f"{device.name} is a {device.kind}: only lights have a brightness"
    if command.temperature is not None and device.kind != "climate":
        return f"{device.name} is a {device.kind}: only thermostats take a temperature"
    return None


def start_home(settings: Any, *, snapshots_dir: Path | None = None) -> HomeService:
    """Build the service from the settings (or their `home` section) and start it."""
    service = HomeService.from_settings(getattr(settings, "home", settings), snapshots_dir=snapshots_dir)
    service.start()
    log.info("home control: %d devices", len(service.registry))
    return service
