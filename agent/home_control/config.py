"""The `home:` section of the config: the MQTT broker, Home Assistant, and the devices.

These models live next to the devices rather than in agent/config/settings.py so that the knowledge
of device kinds stays in one package; `agent.settings.Settings` uses `HomeSettings` as a field.
Secrets never come from the YAML: it names an environment variable or a file instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from agent.home_control.devices import ACTIONS, KINDS, key

DeviceKind = Literal[KINDS]  # type: ignore[valid-type]  # one list of kinds, in devices.py
_ENTITY_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")


class _Section(BaseModel):
    # The same rules as agent.settings._Section (repeated here to avoid a circular import).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MqttSettings(_Section):
    """The MQTT broker that MQTT devices are reached through."""

    host: str | None
    port: int = Field(ge=1, le=65535)
    username: str | None
    password_env: str | None
    client_id: str = Field(min_length=1)
    keepalive_s: int = Field(ge=5)
    reconnect_min_s: float = Field(gt=0)
    reconnect_max_s: float = Field(gt=0)
    state_wait_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _backoff_order(self) -> "MqttSettings":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s}) is less than "
                             f"reconnect_min_s ({self.reconnect_min_s})")
        return self


class HassSettings(_Section):
    """Home Assistant (its websocket, REST as a fallback); the token comes from token_env or token_file."""

    url: str | None
    token_env: str = Field(min_length=1)
    # Strict(False): a path arrives from YAML as text and should become a Path.
    token_file: Annotated[Path, Strict(False)] | None
    timeout_s: float = Field(gt=0)
    reconnect_min_s: float = Field(gt=0)
    reconnect_max_s: float = Field(gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// address such as "
                             f"'http://homeassistant.local:8123', got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("token_file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class DeviceMqttSettings(_Section):
    """A device's MQTT topics and, where they differ from the defaults, its payloads."""

    command_topic: str | None = None
    state_topic: str | None = None
    brightness_topic: str | None = None
    temperature_topic: str | None = None
    availability_topic: str | None = None
    snapshot_topic: str | None = None  # cameras: each message is one JPEG/PNG picture
    payloads: dict[str, str] = {}
    brightness_scale: int = Field(255, ge=1)

    @field_validator("command_topic", "state_topic", "brightness_topic", "temperature_topic",
                     "availability_topic", "snapshot_topic")
    @classmethod
    def _plain_topic(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "+" in value or "#" in value):
            raise ValueError(f"expected one exact topic (no + or # wildcards), got {value!r}")
        return value

    @field_validator("payloads", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads the keys on/off as true/false, so map them back; a bare ON as a
        # value cannot be told apart from "on" or "true", so that must be quoted.
        if not isinstance(value, dict):
            return value
        fixed = {}
        for name, payload in value.items():
            name = {True: "on", False: "off"}.get(name, name) if isinstance(name, bool) else name
            if isinstance(payload, bool):
                raise ValueError(f"the payload for {name!r} reads as true/false in YAML: quote it, e.g. 'ON'")
            fixed[name] = str(payload) if isinstance(payload, (int, float)) else payload
        return fixed


class SnapshotSettings(_Section):
    """A camera whose picture comes from this machine: a file (that something else keeps
    current) or a program that prints one picture to stdout (run without a shell)."""

    # Strict(False): a path arrives from YAML as text and should become a Path.
    file: Annotated[Path, Strict(False)] | None = None
    command: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "SnapshotSettings":
        if (self.file is None) == (self.command is None):
            raise ValueError("give exactly one of 'file' (a picture's path) or 'command' (a program "
                             "and its arguments, as a list, that prints one picture)")
        if self.command is not None and (not self.command or not self.command[0].strip()):
            raise ValueError(f"command must name a program, e.g. [fswebcam, -], got {self.command!r}")
        return self

    @field_validator("file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class CameraSettings(_Section):
    """Limits for camera snapshots, and whether they are kept after the turn that took them."""

    max_snapshot_bytes: int = Field(ge=1024)
    timeout_s: float = Field(gt=0)
    keep_snapshots: bool
    keep_count: int = Field(ge=1)


class DeviceSettings(_Section):
    """One device: a name, a room, a kind, and exactly one of `mqtt` or `entity_id` (a camera
    may instead take its pictures from `snapshot`: a file or a command)."""

    name: str = Field(min_length=1)
    kind: DeviceKind
    room: str | None = None
    aliases: list[str] = []
    confirm: bool = False
    unit: str | None = None
    mqtt: DeviceMqttSettings | None = None
    entity_id: str | None = None
    snapshot: SnapshotSettings | None = None
    keep: bool | None = None  # cameras: keep its snapshots (None: home.cameras.keep_snapshots)

    @model_validator(mode="after")
    def _one_backend(self) -> "DeviceSettings":
        who = f"device {self.name!r}"
        if self.kind == "camera":
            return self._camera_source(who)
        if self.snapshot is not None or self.keep is not None:
            raise ValueError(f"{who}: 'snapshot' and 'keep' are for cameras, not a {self.kind}")
        if (self.mqtt is None) == (self.entity_id is None):
            raise ValueError(f"{who}: give exactly one of 'mqtt' (topics) or 'entity_id' (Home Assistant)")
        if self.entity_id is not None and not _ENTITY_ID.match(self.entity_id):
            raise ValueError(f"{who}: expected an entity id such as 'light.kitchen', got {self.entity_id!r}")
        if self.mqtt is not None:
            if self.mqtt.snapshot_topic is not None:
                raise ValueError(f"{who}: mqtt.snapshot_topic is for cameras, not a {self.kind}")
            needed = "state_topic" if self.kind == "sensor" else "command_topic"
            if getattr(self.mqtt, needed) is None:
                raise ValueError(f"{who}: a {self.kind} on MQTT needs mqtt.{needed}")
            unknown = sorted(set(self.mqtt.payloads) - set(ACTIONS[self.kind]))
            if unknown:
                allowed = ", ".join(ACTIONS[self.kind]) or "none"
                raise ValueError(f"{who}: payloads for {', '.join(unknown)} do not apply to a "
                                 f"{self.kind} (its actions: {allowed})")
        return self

    def _camera_source(self, who: str) -> "DeviceSettings":
        given = [k for k in ("mqtt", "entity_id", "snapshot") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"{who}: a camera takes exactly one of 'entity_id' (a Home Assistant camera), "
                             f"'mqtt: {{snapshot_topic: ...}}' or 'snapshot: {{file: ...}}' / "
                             f"'snapshot: {{command: [...]}}' (got {', '.join(given) or 'none'})")
        if self.entity_id is not None and not self.entity_id.startswith("camera."):
            raise ValueError(f"{who}: expected a camera entity such as 'camera.porch', got {self.entity_id!r}")
        if self.mqtt is not None:
            topics = self.mqtt.model_dump(exclude={"payloads", "brightness_scale", "snapshot_topic"})
            if self.mqtt.snapshot_topic is None or any(topics.values()) or self.mqtt.payloads:
                raise ValueError(f"{who}: a camera on MQTT takes only mqtt.snapshot_topic (the topic its "
                                 "pictures are published on)")
        return self


class HomeSettings(_Section):
    """Home control: how devices are reached, and which devices the model may see."""

    mqtt: MqttSettings
    hass: HassSettings
    cameras: CameraSettings
    devices: list[DeviceSettings]

    @model_validator(mode="after")
    def _consistent(self) -> "HomeSettings":
        seen: dict[str, str] = {}
        for device in self.devices:
            for name in (device.name, *device.aliases):
                other = seen.setdefault(key(name), device.name)
                if other != device.name:
                    raise ValueError(f"the name {name!r} is used twice (devices {other!r} and "
                                     f"{device.name!r}): names and aliases must be unique")
            if device.mqtt is not None and self.mqtt.host is None:
                raise ValueError(f"device {device.name!r} uses MQTT, but home.mqtt.host is null")
            if device.entity_id is not None and self.hass.url is None:
                raise ValueError(f"device {device.name!r} is a Home Assistant entity, "
                                 "but home.hass.url is null")
        return self
