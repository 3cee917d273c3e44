"""Home Assistant intents as agentd tool calls, and the home's names as hassil slot lists.

An HA intent names what to do (HassTurnOn) and which devices by `name`, `area` and `domain`;
agentd's home tools take one device name, a room ("kitchen"), or a room and a kind
("kitchen light"), which `DeviceRegistry.find` resolves. So "schalte das Licht im Flur ein"
(HassTurnOn, area Flur, domain light) becomes set_device(device="Flur light", state="on").
Locks and covers go to set_secure_device, whose confirm tier still asks the person first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# agentd's device kinds are HA's domains; these are the ones agentd has.
KINDS = ("light", "switch", "cover", "lock", "climate", "sensor")
# The English kind word DeviceRegistry.find understands after a room name.
KIND_WORD = {"light": "light", "switch": "switch", "cover": "cover", "lock": "lock",
             "climate": "thermostat", "sensor": "sensor"}
INTENTS = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassGetState", "HassGetCurrentTime",
           "HassClimateSetTemperature", "HassClimateGetTemperature")


@dataclass
class HomeLists:
    """The home's names for hassil's slot lists: devices (with their kind), rooms and floors."""

    names: list[tuple[str, str, str]] = field(default_factory=list)  # (spoken, device name, kind)
    areas: list[str] = field(default_factory=list)
    floors: list[str] = field(default_factory=list)  # agentd has no floors yet
    secure: set[str] = field(default_factory=set)  # device names that need a confirmation

    @classmethod
    def from_registry(cls, registry: Any) -> HomeLists:
        """From a DeviceRegistry (None: a home without devices)."""
        if registry is None:
            return cls()
        names = [(spoken, d.name, d.kind) for d in registry for spoken in (d.name, *d.aliases)]
        return cls(names=names, areas=registry.rooms(), secure={d.name for d in registry if d.secure})

    def slot_lists(self) -> dict:
        """hassil TextSlotLists `name`, `area` and `floor`; a name carries its domain as context."""
        from hassil.intents import TextSlotList

        return {
            "name": TextSlotList.from_tuples([(s, n, {"domain": k}) for s, n, k in self.names],
                                             allow_template=False, name="name"),
            "area": TextSlotList.from_strings(self.areas, allow_template=False, name="area"),
            "floor": TextSlotList.from_strings(self.floors, allow_template=False, name="floor"),
        }

    def kind_of(self, name: str) -> str | None:
        return next((k for _s, n, k in self.names if n == name), None)

    def only(self, kind: str) -> str | None:
        """The one device of a kind, if the home has exactly one ("set the heating to 21")."""
        devices = {n for _s, n, k in self.names if k == kind}
        return devices.pop() if len(devices) == 1 else None


def plan(intent: str, slots: dict, home: HomeLists) -> tuple[str, dict] | str:
    """(tool, arguments) for an HA intent, or why agentd has no tool call for it."""
    name, area = slots.get("name"), slots.get("area")
    domain = slots.get("domain") if isinstance(slots.get("domain"), str) else None
    kind = home.kind_of(name) if name else domain
    if kind is not None and kind not in KINDS:
        return f"agentd has no {kind} devices"
    target = name or _group(area, kind)
    if intent == "HassGetCurrentTime":
        return "get_current_time", {}
    if intent in ("HassTurnOn", "HassTurnOff"):
        on = intent == "HassTurnOn"
        if kind in ("lock", "cover"):
            if not name:
                return f"a {kind} is named one at a time"
            actions = ("lock", "unlock") if kind == "lock" else ("open", "close")
            return "set_secure_device", {"device": name, "action": actions[0] if on else actions[1]}
        if target is None or kind == "sensor":
            return "nothing to switch"
        if name and name in home.secure:
            return "set_secure_device", {"device": name, "action": "on" if on else "off"}
        return "set_device", {"device": target, "state": "on" if on else "off"}
    if intent == "HassLightSet":
        if "brightness" not in slots or not (name or area):
            return "only brightness of a named light or room is set on the phrase path"
        return "set_device", {"device": name or _group(area, "light"), "brightness": slots["brightness"]}
    if intent == "HassGetState":
        return ("get_device_state", {"device": target}) if target else "nothing to read"
    if intent in ("HassClimateSetTemperature", "HassClimateGetTemperature"):
        thermostat = name or (_group(area, "climate") if area else home.only("climate"))
        if thermostat is None:
            return "which thermostat is not clear"
        if intent == "HassClimateGetTemperature":
            return "get_device_state", {"device": thermostat}
        return "set_device", {"device": thermostat, "temperature": slots.get("temperature")}
    return f"agentd has no tool for {intent}"


def _group(area: str | None, kind: str | None) -> str | None:
    """What DeviceRegistry.find calls a room's devices of a kind: "Flur light", "Flur", "light"."""
    word = KIND_WORD.get(kind or "")
    return " ".join(p for p in (area, word) if p) or None
