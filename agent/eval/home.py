"""The eval's home: the sample home's devices, acted on in memory, never on a real network.

The home file is a config file's `home:` section (validated by the same HomeSettings as the
user's config, so it is a real, loadable home) plus `states:`, the devices' states before each
case. The device tools (skills/home) run unchanged against the real HomeService (finding
devices by name, alias or room; the rule that locks and covers need set_secure_device); only
the backend underneath is simulated: it records the commands and reports the states they
lead to, where the real ones would publish to MQTT or call Home Assistant. So the eval
measures the model's choices, not a broker's latency, and contacts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.eval.cases import CaseFileError, read_yaml
from agent.home_control.devices import DeviceCommand, Device, DeviceRegistry, DeviceState, HomeControlError
from agent.home_control.service import HomeService


@dataclass
class HomeFile:
    """The `home:` section (for the settings) and the devices' starting states."""

    path: Path
    section: dict
    states: dict[str, str]


def read_home_file(path: Path) -> HomeFile:
    """Read a home file; CaseFileError if its shape is wrong (HomeSettings checks the rest)."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("home"), dict):
        raise CaseFileError(f"{path}: expected a `home:` section (as in agentd's config) with `devices:`")
    unknown = sorted(set(data) - {"home", "states"})
    if unknown:
        raise CaseFileError(f"{path}: {unknown[0]}: unknown key (known: home, states)")
    states = data.get("states") or {}
    if not isinstance(states, dict):
        raise CaseFileError(f"{path}: states: expected a mapping of device name to state")
    return HomeFile(path=Path(path), section=data["home"], states={str(k): str(v) for k, v in states.items()})


class SimulatedHome:
    """Device states in memory: what every command changed, what a read reports."""

    def __init__(self, devices: list[Device]):
        self.registry = DeviceRegistry(devices)
        self.states: dict[str, DeviceState] = {}
        self.applied: list[tuple[str, DeviceCommand]] = []
        self.reset({})

    def reset(self, states: dict[str, str]) -> None:
        """Start a case: every device unknown-but-available, then the given states."""
        self.applied = []
        self.states = {d.name: _initial(d) for d in self.registry}
        for name, state in states.items():
            device = self.device(name)
            self.states[device.name] = DeviceState(device.name, True, _with_unit(device, state))

    def device(self, name: str) -> Device:
        match = self.registry.find(name)
        if match.group:
            raise HomeControlError(f"{name!r} names several devices ({', '.join(d.name for d in match.devices)}); name one")
        return match.devices[0]

    def backend(self, name: str) -> "SimulatedBackend":
        return SimulatedBackend(name, self)

    def service(self) -> HomeService:
        """A HomeService over these devices, with this simulation as both backends."""
        return HomeService(self.registry, mqtt=self.backend("mqtt"), hass=self.backend("hass"))

    def name_problem(self, name: str) -> str | None:
        """Why a device name finds nothing in this home (None when it does)."""
        try:
            self.registry.find(name)
        except HomeControlError as exc:
            return str(exc)
        return None


class SimulatedBackend:
    """One backend's view (mqtt or hass) of the simulated home; the Backend protocol."""

    def __init__(self, name: str, home: SimulatedHome):
        self.name = name
        self.home = home

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, devices: list[Device]) -> list[DeviceState]:
        return [self.home.states[d.name] for d in devices]

    def apply(self, changes: list[tuple[Device, DeviceCommand]]) -> list[DeviceState]:
        for device, command in changes:
            self.home.applied.append((device.name, command))
            old = self.home.states[device.name]
            attributes = dict(old.attributes)
            if command.brightness is not None:
                attributes["brightness"] = f"{command.brightness}%"
            if command.temperature is not None:
                attributes["target_temperature"] = f"{command.temperature:g}"
            state = command.expected_state() or old.state
            if state == "off":
                attributes.pop("brightness", None)
            self.home.states[device.name] = DeviceState(device.name, True, state, attributes)
        return [self.home.states[d.name] for d, _ in changes]


def _initial(device: Device) -> DeviceState:
    default = {"light": "off", "switch": "off", "climate": "off", "cover": "closed", "lock": "locked"}.get(device.kind)
    if default is None:  # a sensor with no state given has not reported yet
        return DeviceState(device.name, False, reason="no reading yet")
    return DeviceState(device.name, True, default)


def _with_unit(device: Device, state: str) -> str:
    if device.kind == "sensor" and device.unit and not state.endswith(device.unit):
        return f"{state} {device.unit}"
    return state


def devices_from(settings: Any) -> list[Device]:
    """The validated settings' devices."""
    return [Device.from_settings(d) for d in settings.home.devices]
