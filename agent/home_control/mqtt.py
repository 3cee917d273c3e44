"""MQTT backend: paho-mqtt on its own network thread, with a state cache fed by state topics.

paho's loop thread reconnects by itself, waiting reconnect_min_s and doubling up to
reconnect_max_s; on every connect the state topics are subscribed to again and retained
messages refill the cache. While the broker is unreachable every device reads as unavailable:
a value cached before the break may be stale, so it is dropped rather than reported.
Camera pictures (snapshot topics) are the exception: each is kept, as bytes, with the time
it arrived, so the camera tool can say how old the picture it shows is.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import paho.mqtt.client as paho

from agent.home_control.devices import RESULT, DeviceCommand, Device, DeviceState, HomeControlError

log = logging.getLogger(__name__)

# Retained states arrive just after a (re)subscribe; a read in that moment waits for them.
RETAINED_GRACE_S = 0.5
# Just after start, a call waits this long for the first connection instead of failing.
CONNECT_GRACE_S = 2.0
PUBLISH_TIMEOUT_S = 2.0
KNOWN_STATES = {"on", "off", "open", "closed", "opening", "closing", "stopped", "locked",
                "unlocked", "locking", "unlocking", "jammed"}
NO_STATE = {"", "unavailable", "unknown", "none", "null"}


@dataclass(frozen=True)
class Reading:
    payload: str
    seq: int  # increases with every message, so a waiter can tell new from old


@dataclass(frozen=True)
class Picture:
    """The last message on a camera's snapshot topic, as it came."""

    data: bytes
    received: float  # time.time() when it arrived
    retained: bool  # sent by the broker on subscribing: taken before `received`


Listener = Callable[[str, str, bool], None]  # (topic, payload, retained), on paho's thread


class StateCache:
    """The last payload seen on each topic; safe to use from any thread."""

    def __init__(self) -> None:
        self._values: dict[str, Reading] = {}
        self._seq = 0
        self._changed = threading.Condition()  # an RLock underneath, so predicates may call get()
        self._listeners: list[Listener] = []

    def put(self, topic: str, payload: str, *, retained: bool = False) -> None:
        with self._changed:
            self._seq += 1
            self._values[topic] = Reading(payload, self._seq)
            self._changed.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:  # outside the lock; a listener must be quick (hand it on)
            try:
                listener(topic, payload, retained)
            except Exception:
                log.exception("a state listener failed on %s", topic)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every message from now on; returns what stops that."""
        with self._changed:
            self._listeners.append(listener)

        def stop() -> None:
            with self._changed:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop

    def get(self, topic: str) -> Reading | None:
        with self._changed:
            return self._values.get(topic)

    def seq(self) -> int:
        with self._changed:
            return self._seq

    def clear(self) -> None:
        with self._changed:
            self._values.clear()
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() holds (re-checked on every message); its last value."""
        with self._changed:
            return self._changed.wait_for(predicate, max(0.0, timeout))


class MqttBackend:
    """Sends commands to MQTT devices and reads their states from the cache."""

    name = "mqtt"

    def __init__(self, settings: Any, devices: Iterable[Device], *, password: str | None = None,
                 max_picture_bytes: int = 10_000_000):
        self.settings = settings
        self.devices = [d for d in devices if d.mqtt is not None]
        self.max_picture_bytes = max_picture_bytes
        self._snapshot_topics = {d.mqtt.snapshot_topic for d in self.devices if d.mqtt.snapshot_topic}
        self._pictures: dict[str, Picture] = {}
        self._oversized: dict[str, int] = {}  # topic -> size of the last picture refused as too big
        self.where = f"{settings.host}:{settings.port}"
        self.cache = StateCache()
        self._connected = threading.Event()
        self._subscribed_at = 0.0
        self._started_at = 0.0
        self._failing = False
        self._trouble = "retrying"  # why we are not connected, for the unavailable message
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id)
        if settings.username:
            self.client.username_pw_set(settings.username, password)
        self.client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried with back-off."""
        self._started_at = time.monotonic()
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _ready(self) -> bool:
        """Connected now, or soon after start, unless an attempt has already failed."""
        while not self._connected.is_set() and not self._failing:
            remaining = self._started_at + CONNECT_GRACE_S - time.monotonic()
            if remaining <= 0:
                break
            self._connected.wait(min(remaining, 0.05))
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _topics(self) -> list[str]:
        topics = [t for d in self.devices
                  for t in (d.mqtt.state_topic, d.mqtt.availability_topic, d.mqtt.snapshot_topic) if t]
        return list(dict.fromkeys(topics))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._trouble = (f"it refused the connection ({reason_code}): check home.mqtt.username "
                             "and the variable named by home.mqtt.password_env")
            if not self._failing:  # paho keeps retrying with back-off; say it once
                log.warning("MQTT broker %s: %s", self.where, self._trouble)
            self._failing = True
            return
        if self._topics():
            client.subscribe([(topic, 0) for topic in self._topics()])
        self._subscribed_at = time.monotonic()
        self._failing, self._trouble = False, "retrying"
        self._connected.set()
        log.info("connected to the MQTT broker at %s", self.where)

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._failing:  # once per outage; paho keeps retrying with back-off
            log.warning("cannot reach the MQTT broker at %s; retrying", self.where)
        self._failing = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self.cache.clear()
        if was_connected and reason_code.is_failure:
            log.warning("lost the MQTT broker at %s (%s); reconnecting", self.where, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic in self._snapshot_topics:
            self._keep_picture(message)
            return
        # retained: sent because we (re)subscribed, an old state rather than a change now
        self.cache.put(message.topic, message.payload.decode("utf-8", "replace"), retained=bool(message.retain))

    def _keep_picture(self, message) -> None:
        size = len(message.payload)
        if size > self.max_picture_bytes:  # not held in memory: say why there is no picture
            self._oversized[message.topic] = size
            self._pictures.pop(message.topic, None)
            return
        self._oversized.pop(message.topic, None)
        self._pictures[message.topic] = Picture(bytes(message.payload), time.time(), bool(message.retain))

    def picture(self, topic: str) -> Picture:
        """The latest picture received on a snapshot topic; HomeControlError saying why there is none."""
        seen = self._reading_picture(topic)
        if seen is not None:
            return seen
        if topic in self._oversized:
            raise HomeControlError(f"the last picture on {topic} was {self._oversized[topic]} bytes, over "
                                   f"home.cameras.max_snapshot_bytes ({self.max_picture_bytes})")
        if not self._ready():
            raise HomeControlError(f"not connected to the MQTT broker at {self.where} ({self._trouble}), and "
                                   f"no picture has arrived on {topic}")
        raise HomeControlError(f"no picture has arrived on {topic} yet (the camera publishes one there)")

    def latest_picture(self, topic: str) -> Picture | None:
        """The latest picture on a snapshot topic, without waiting for one."""
        return self._pictures.get(topic)

    def _reading_picture(self, topic: str) -> Picture | None:
        if topic not in self._pictures:
            self._ready()  # just after start: wait for the connection, then for a retained picture
            deadline = self._subscribed_at + RETAINED_GRACE_S
            while topic not in self._pictures and time.monotonic() < deadline:
                time.sleep(0.02)
        return self._pictures.get(topic)

    # -- reading ---------------------------------------------------------------------------

    def read(self, devices: list[Device]) -> list[DeviceState]:
        return [self.state_of(d) for d in devices]

    def state_of(self, device: Device) -> DeviceState:
        """What the broker last said about a device, or why that is not known."""
        t = device.mqtt
        if not self._ready():
            why = f"not connected to the MQTT broker at {self.where}; {self._trouble}"
            return DeviceState(device.name, False, reason=why)
        if t.availability_topic:
            seen = self._reading(t.availability_topic)
            if seen is not None and seen.payload.strip().lower() == "offline":
                return DeviceState(device.name, False, reason=f"it reports itself offline on {t.availability_topic}")
        if not t.state_topic:
            return DeviceState(device.name, False, reason="it has no state_topic in the config")
        seen = self._reading(t.state_topic)
        if seen is None or seen.payload.strip().lower() in NO_STATE:
            return DeviceState(device.name, False, reason=f"no state has been received on {t.state_topic}")
        return parse_state(device, seen.payload)

    def _reading(self, topic: str) -> Reading | None:
        grace = self._subscribed_at + RETAINED_GRACE_S - time.monotonic()
        if grace > 0:
            self.cache.wait(lambda: self.cache.get(topic) is not None, grace)
        return self.cache.get(topic)

    # -- changing --------------------------------------------------------------------------

    def apply(self, changes: list[tuple[Device, DeviceCommand]]) -> list[DeviceState]:
        """Send each command, then wait up to state_wait_s for the devices to report back."""
        if not self._ready():
            raise HomeControlError(f"cannot reach the MQTT broker at {self.where} ({self._trouble}); nothing was changed")
        before = self.cache.seq()
        failed: dict[str, DeviceState] = {}
        for device, command in changes:
            try:
                self._send(device, command)
            except HomeControlError as exc:
                failed[device.name] = DeviceState(device.name, False, reason=str(exc))
        deadline = time.monotonic() + self.settings.state_wait_s
        return [failed.get(d.name) or self._confirm(d, c, before, deadline) for d, c in changes]

    def _send(self, device: Device, command: DeviceCommand) -> None:
        t = device.mqtt
        messages = []
        if command.brightness is not None:
            if not t.brightness_topic:
                raise HomeControlError(f"{device.name} cannot be dimmed: it has no brightness_topic in the config")
            messages.append((t.brightness_topic, str(round(command.brightness * t.brightness_scale / 100))))
        if command.temperature is not None:
            if not t.temperature_topic:
                raise HomeControlError(f"{device.name} cannot take a temperature: it has no temperature_topic in the config")
            messages.append((t.temperature_topic, f"{command.temperature:g}"))
        if command.action:  # last, as Home Assistant does: the level first, then "ON"
            messages.append((t.command_topic, t.payloads[command.action]))
        for topic, payload in messages:
            # QoS 0: a command that cannot go out now fails now, rather than being queued
            # and switching a light on minutes later when the broker returns.
            info = self.client.publish(topic, payload, qos=0)
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError):
                pass
            if info.rc != paho.MQTT_ERR_SUCCESS or not info.is_published():
                raise HomeControlError(f"could not send {payload!r} to {topic} for {device.name}: "
                                f"{paho.error_string(info.rc)}")

    def _confirm(self, device: Device, command: DeviceCommand, before: int, deadline: float) -> DeviceState:
        """The device's state once it has reported the change, or a note that it has not."""
        topic, expected = device.mqtt.state_topic, command.expected_state()
        if not topic:
            return DeviceState(device.name, True, reason=f"sent {command.text()!r}; it reports no state to confirm it")

        def reported() -> bool:
            seen = self.cache.get(topic)
            return seen is not None and seen.seq > before and (
                expected is None or parse_state(device, seen.payload).state == expected)

        self.cache.wait(reported, deadline - time.monotonic())
        state = self.state_of(device)
        if reported() or (expected is not None and state.state == expected):
            return state
        last = f" (last reported: {state.state})" if state.available and state.state else ""
        return DeviceState(device.name, True, reason=f"sent {command.text()!r}, but it has not confirmed it yet{last}")


def parse_state(device: Device, payload: str) -> DeviceState:
    """Turn a state payload (plain text, or JSON as zigbee2mqtt sends) into a DeviceState."""
    text, attributes = payload.strip(), {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "state" in data:
        text = str(data["state"])
        if isinstance(data.get("brightness"), (int, float)):
            attributes["brightness"] = f"{round(data['brightness'] * 100 / device.mqtt.brightness_scale)}%"
        attributes.update({k: data[k] for k in ("temperature", "current_temperature", "position") if k in data})
    elif isinstance(data, dict):  # a multi-sensor: {"temperature": 21.5, "humidity": 40}
        text = ", ".join(f"{k} {v}" for k, v in data.items() if isinstance(v, (str, int, float)))
    state = _word_for(device, text)
    if device.unit and device.kind == "sensor":
        state = f"{state} {device.unit}"
    return DeviceState(device.name, True, state, attributes)


def _word_for(device: Device, raw: str) -> str:
    """The payload as a state word (ON -> on, LOCKED -> locked); other values as they are."""
    low = raw.strip().lower()
    for action, payload in device.mqtt.payloads.items():
        if payload.lower() == low:
            return RESULT[action]
    return low if low in KNOWN_STATES else raw.strip()
