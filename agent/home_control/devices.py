"""Devices: what a device is, what it can do, and finding one by a spoken name or room.

A device comes from `home.devices` in the config. It is either an MQTT device (topics and
payloads) or a Home Assistant entity (an entity id); `agent.config.settings` checks that exactly one
is given. Locks and covers, and anything marked `confirm: true`, are "secure": only a
confirm-tier tool may change them, so a person always says yes first.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from agent.tools import ToolError

KINDS = ("light", "switch", "sensor", "cover", "lock", "climate", "camera")
SECURE_KINDS = ("cover", "lock")
# The actions each kind accepts, and the state each one leads to.
ACTIONS: dict[str, tuple[str, ...]] = {
    "light": ("on", "off"),
    "switch": ("on", "off"),
    "climate": ("on", "off"),
    "cover": ("open", "close", "stop"),
    "lock": ("lock", "unlock"),
    "sensor": (),
    "camera": (),  # looked at (look_at_camera), never changed
}
RESULT = {"on": "on", "off": "off", "open": "open", "close": "closed", "stop": "stopped",
          "lock": "locked", "unlock": "unlocked"}
# MQTT payloads when the config gives none: Home Assistant's MQTT defaults for each kind.
DEFAULT_PAYLOADS: dict[str, dict[str, str]] = {
    "light": {"on": "ON", "off": "OFF"},
    "switch": {"on": "ON", "off": "OFF"},
    "climate": {"on": "heat", "off": "off"},
    "cover": {"open": "OPEN", "close": "CLOSE", "stop": "STOP"},
    "lock": {"lock": "LOCK", "unlock": "UNLOCK"},
    "sensor": {},
    "camera": {},
}
# Words people use for a kind, so "the kitchen lamps" or "all the blinds" find devices.
KIND_WORDS = {
    "light": "light", "lamp": "light", "bulb": "light", "switch": "switch", "plug": "switch",
    "socket": "switch", "outlet": "switch", "sensor": "sensor", "cover": "cover", "blind": "cover",
    "shade": "cover", "shutter": "cover", "curtain": "cover", "lock": "lock",
    "thermostat": "climate", "heating": "climate", "heater": "climate", "climate": "climate",
    "camera": "camera", "cam": "camera", "webcam": "camera",
}
_FILLERS = {"the", "my", "all", "every", "a"}


class HomeControlError(ToolError):
    """A device cannot be found, reached or changed; the message tells the model what to do."""


@dataclass(frozen=True)
class MqttTopics:
    """Where an MQTT device listens and reports, and the payloads it understands."""

    command_topic: str | None = None
    state_topic: str | None = None
    brightness_topic: str | None = None
    temperature_topic: str | None = None
    availability_topic: str | None = None
    snapshot_topic: str | None = None
    payloads: dict[str, str] = field(default_factory=dict)
    brightness_scale: int = 255


@dataclass(frozen=True)
class LocalSnapshot:
    """A camera's picture from this machine: a file, or a program printing one picture."""

    file: str | None = None
    command: tuple[str, ...] | None = None

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"command {' '.join(self.command or ())}"


@dataclass(frozen=True)
class Device:
    """One device the model may see and use."""

    name: str
    kind: str
    room: str | None = None
    aliases: tuple[str, ...] = ()
    confirm: bool = False
    unit: str | None = None
    mqtt: MqttTopics | None = None
    entity_id: str | None = None
    snapshot: LocalSnapshot | None = None
    keep: bool | None = None  # a camera's own choice to keep snapshots (None: the home's setting)

    @classmethod
    def from_settings(cls, s: Any) -> "Device":
        """A Device from one validated `home.devices` entry."""
        topics = None
        if s.mqtt is not None:
            m = s.mqtt
            topics = MqttTopics(
                command_topic=m.command_topic, state_topic=m.state_topic,
                brightness_topic=m.brightness_topic, temperature_topic=m.temperature_topic,
                availability_topic=m.availability_topic, snapshot_topic=m.snapshot_topic,
                payloads={**DEFAULT_PAYLOADS[s.kind], **m.payloads},
                brightness_scale=m.brightness_scale,
            )
        local = None
        if s.snapshot is not None:
            command = tuple(s.snapshot.command) if s.snapshot.command is not None else None
            local = LocalSnapshot(file=str(s.snapshot.file) if s.snapshot.file else None, command=command)
        return cls(name=s.name, kind=s.kind, room=s.room, aliases=tuple(s.aliases), confirm=s.confirm,
                   unit=s.unit, mqtt=topics, entity_id=s.entity_id, snapshot=local, keep=s.keep)

    @property
    def secure(self) -> bool:
        """Whether changing it needs a person's yes (locks, covers, `confirm: true`)."""
        return self.confirm or self.kind in SECURE_KINDS

    @property
    def actions(self) -> tuple[str, ...]:
        return ACTIONS[self.kind]

    def describe(self) -> str:
        where = f" in the {self.room}" if self.room else ""
        return f"{self.name} ({self.kind}{where})"


@dataclass(frozen=True)
class DeviceCommand:
    """A change to make: an action (on, off, open, lock, ...), a brightness, a temperature."""

    action: str | None = None
    brightness: int | None = None  # percent, 0 to 100
    temperature: float | None = None

    def expected_state(self) -> str | None:
        """The state the device should report once the command has worked."""
        return RESULT.get(self.action or "")

    def text(self) -> str:
        parts = [self.action or ""]
        if self.brightness is not None:
            parts.append(f"brightness {self.brightness}%")
        if self.temperature is not None:
            parts.append(f"temperature {self.temperature:g}")
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class DeviceState:
    """What is known about a device now; never a guess."""

    device: str
    available: bool
    state: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def summary(self) -> str:
        """The state without the name: `on (brightness 40%)`, `unavailable: ...`."""
        if not self.available:
            return f"unavailable: {self.reason}"
        if self.state is None:  # a command went out, but the device has not said how it is
            return self.reason
        extras = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.attributes.items())
        return self.state + (f" ({extras})" if extras else "")

    def text(self) -> str:
        """One sentence, fit to be spoken: `kitchen light is on (brightness 40%)`."""
        joiner = ":" if self.available and self.state is None else " is"
        return f"{self.device}{joiner} {self.summary()}"


@dataclass(frozen=True)
class Match:
    """The devices a name or room stands for; `group` when it named a room or a kind."""

    devices: tuple[Device, ...]
    group: bool
    label: str


def key(text: str) -> str:
    """A comparable form of a name: lower case, no punctuation or fillers, singular words."""
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return " ".join(_singular(w) for w in words if w not in _FILLERS)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


class DeviceRegistry:
    """The configured devices, found by name, alias, room, or room plus kind."""

    def __init__(self, devices: list[Device] | tuple[Device, ...] = ()):
        self.devices = tuple(devices)
        self._by_name = {key(n): d for d in self.devices for n in (d.name, *d.aliases)}
        self._rooms = {key(d.room): d.room for d in self.devices if d.room}

    def __iter__(self):
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def rooms(self) -> list[str]:
        return sorted(set(self._rooms.values()))

    def in_room(self, room: str | None) -> list[Device]:
        """Devices in a room (every device for None); HomeControlError for an unknown room."""
        if room is None or not room.strip():
            return list(self.devices)
        wanted = self._rooms.get(key(room))
        if wanted is None:
            raise HomeControlError(f"there is no room called {room!r}; rooms: {', '.join(self.rooms()) or 'none'}")
        return [d for d in self.devices if d.room == wanted]

    def find(self, query: str) -> Match:
        """The device(s) a spoken name means; HomeControlError says what is known when nothing fits."""
        q = key(query)
        if q in self._by_name:
            return Match((self._by_name[q],), False, self._by_name[q].name)
        if q in self._rooms:
            return self._group(query, lambda d: d.room == self._rooms[q])
        if q in KIND_WORDS:  # "all the lights"
            return self._group(query, lambda d: d.kind == KIND_WORDS[q])
        for room_key, room in self._rooms.items():  # "kitchen lights", "lights in the kitchen"
            rest = _strip_room(q, room_key)
            if rest is not None and rest in KIND_WORDS:
                return self._group(query, lambda d: d.room == room and d.kind == KIND_WORDS[rest])
        words = set(q.split())
        containing = [d for k, d in self._by_name.items() if words and words <= set(k.split())]
        containing = list({d.name: d for d in containing}.values())  # an alias and its name
        if len(containing) == 1:
            return Match((containing[0],), False, containing[0].name)
        if len(containing) > 1:
            names = ", ".join(d.name for d in containing)
            raise HomeControlError(f"{query!r} could mean {names}: say which one")
        close = difflib.get_close_matches(q, [*self._by_name, *self._rooms], n=1, cutoff=0.8)
        if close:  # a misheard or misspelt name ("kitchen lite")
            return self.find(self._by_name[close[0]].name if close[0] in self._by_name else self._rooms[close[0]])
        raise HomeControlError(f"no device or room called {query!r}; {self.known()}")

    def _group(self, query: str, keep) -> Match:
        found = tuple(d for d in self.devices if keep(d))
        if not found:
            raise HomeControlError(f"no devices match {query!r}; {self.known()}")
        return Match(found, True, query.strip())

    def known(self) -> str:
        """What the model could have asked for instead."""
        names = ", ".join(d.name for d in self.devices) or "none are configured"
        rooms = ", ".join(self.rooms()) or "none"
        return f"devices: {names}; rooms: {rooms}"

    def slot_values(self) -> list[str]:
        """What a fast phrase may name to switch: plain lights and switches, rooms, groups of lights."""
        plain = [d for d in self.devices if not d.secure and d.kind in ("light", "switch")]
        lit_rooms = [d.room for d in plain if d.room and d.kind == "light"]
        values = [n for d in plain for n in (d.name, *d.aliases)]
        values += [d.room for d in plain if d.room] + [f"{room} lights" for room in lit_rooms]
        if any(d.kind == "light" for d in plain):
            values += ["lights", "all lights", "all the lights"]
        return list(dict.fromkeys(values))

    def secure_slot_values(self) -> list[str]:
        """What a fast phrase may name to lock, unlock, open or close: the devices that need a
        confirmation (their tool asks the person first, so the fast path is safe for them)."""
        return list(dict.fromkeys(n for d in self.devices if d.secure for n in (d.name, *d.aliases)))


def _strip_room(q: str, room_key: str) -> str | None:
    """What is left of "kitchen light" / "light in kitchen" once the room is taken out."""
    if q.startswith(room_key + " "):
        return q[len(room_key) + 1:]
    for joiner in (" in ", " on "):
        if q.endswith(joiner + room_key):
            return q[: -len(joiner + room_key)]
    return None
