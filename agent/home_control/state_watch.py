"""State triggers: run an automation when a home device reaches a state (and holds it a while).

    trigger: {state: {device: hall motion, to: "on", for: 30s}}

The scheduler hands a `StateWatch` its state automations at every sync (its `state_hook`);
the watch listens to the MQTT state topics of their devices and calls `fire(id, spec)` once
per change into the state, after `for` if given (a change away before then cancels it).
Retained messages (sent on every (re)connect) only tell the watch where things stand: they
are old news, not changes. Home Assistant devices are heard through the backend's websocket
(`HassLink`), under the key `hass:<entity_id>`; states it reloads after a gap count as
retained.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from agent.home_control.devices import Device, HomeControlError
from agent.schedule.timewords import parse_duration

log = logging.getLogger(__name__)

Fire = Callable[[str, dict], Awaitable[Any]]  # Scheduler.fire
HASS_KEY = "hass:"  # watched keys of Home Assistant entities, beside MQTT topics


class StateWatch:
    """The scheduler's `state_hook`: follows the current HomeService, fires state automations."""

    def __init__(self, home: Callable[[], Any], fire: Fire):
        self.home, self.fire = home, fire  # home(): the HomeService now (it changes on reload)
        self.watched: dict[str, list[tuple[Any, Device, str, float]]] = {}  # topic -> (automation, ...)
        self.last: dict[str, str] = {}  # device name -> the state it last reported
        self.pending: dict[str, tuple[asyncio.TimerHandle, str]] = {}  # automation id -> (timer, fingerprint)
        self.tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound: Any = None
        self._unlisten: Callable[[], None] | None = None

    def __call__(self, automations: list) -> list[str]:
        """Watch these automations (LoadedAutomation) from now on; the problems, one per automation."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # a sync outside the loop (tests); events wait for the next sync on it
        service = self.home()
        watched: dict[str, list] = {}
        problems: list[str] = []
        for item in automations:
            try:
                topic, entry = self._entry(item, service)
            except HomeControlError as exc:
                problems.append(f"automation {item.id!r}: trigger.state: {exc}")
                continue
            if item.automation.enabled:
                watched.setdefault(topic, []).append(entry)
        keep = {e[0].spec["fingerprint"] for entries in watched.values() for e in entries}
        for job_id, (timer, fingerprint) in list(self.pending.items()):
            if fingerprint not in keep:  # removed or changed: its wait no longer counts
                timer.cancel()
                del self.pending[job_id]
        self.watched = watched
        self._bind(service)
        return problems

    def _entry(self, item: Any, service: Any) -> tuple[str, tuple]:
        state = item.automation.trigger.state
        if service is None:
            raise HomeControlError("home control is not running (home.devices lists no devices)")
        match = service.registry.find(state.device)
        if match.group:
            raise HomeControlError(f"device: {state.device!r} names several devices; name one")
        device = match.devices[0]
        try:
            hold = parse_duration(state.for_).total_seconds() if state.for_ is not None else 0.0
        except ValueError as exc:
            raise HomeControlError(f"for: {exc}") from None
        if device.entity_id is not None:
            if _link(service) is None:
                raise HomeControlError(f"device: {device.name} is a Home Assistant entity, and there is no "
                                "Home Assistant token, so its state is never heard")
            return HASS_KEY + device.entity_id, (item, device, _word(state.to), hold)
        if not device.mqtt.state_topic:
            raise HomeControlError(f"device: {device.name} has no state_topic, so its state is never heard")
        return device.mqtt.state_topic, (item, device, _word(state.to), hold)

    def _bind(self, service: Any) -> None:
        """Listen to the service's MQTT messages and Home Assistant states (a reload brings a new service)."""
        if service is self._bound:
            return
        if self._unlisten is not None:
            self._unlisten()
        self._bound, self._unlisten = service, None
        stops = []
        if service is not None and service.mqtt is not None:
            stops.append(service.mqtt.cache.listen(self._heard))
        if _link(service) is not None:
            stops.append(_link(service).listen(
                lambda entity_id, word, reloaded: self._heard(HASS_KEY + entity_id, word, reloaded)))
        if stops:
            self._unlisten = lambda: [stop() for stop in stops]

    def _heard(self, topic: str, payload: str, retained: bool) -> None:
        """On paho's thread: hand the message to the event loop."""
        loop = self._loop
        if topic in self.watched and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._changed, topic, payload, retained)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _changed(self, topic: str, payload: str, retained: bool) -> None:
        entries = self.watched.get(topic, [])
        if not entries:
            return
        device = entries[0][1]
        # Home Assistant sends the state word itself; MQTT a payload to parse.
        now = payload.strip().lower() if topic.startswith(HASS_KEY) else _state_of(device, payload)
        if self.last.get(device.name) == now:
            return  # the same state again: no new change
        self.last[device.name] = now
        for item, _, to, hold in entries:
            if item.id in self.pending and now != to:
                self.pending.pop(item.id)[0].cancel()  # it did not hold
            elif now == to and not retained and item.id not in self.pending:
                if hold:
                    timer = self._loop.call_later(hold, self._run, item)
                    self.pending[item.id] = (timer, item.spec["fingerprint"])
                else:
                    self._run(item)

    def _run(self, item: Any) -> None:
        self.pending.pop(item.id, None)
        log.info("state trigger: %s", item.id)
        task = asyncio.ensure_future(self.fire(item.id, item.spec))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        """Stop listening and drop waits (the daemon is stopping)."""
        if self._unlisten is not None:
            self._unlisten()
        self._bound = self._unlisten = None
        for timer, _ in self.pending.values():
            timer.cancel()
        self.pending.clear()


def _link(service: Any) -> Any:
    """The service's Home Assistant websocket, if it has one (a simulated backend has none)."""
    return getattr(getattr(service, "hass", None), "link", None)


def _word(value: Any) -> str:
    """A `to:` as a state word: YAML reads an unquoted on/off as true/false."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip().lower()


def _state_of(device: Device, payload: str) -> str:
    """The state word a payload reports, without a sensor's unit; 'unavailable' for none."""
    from agent.home_control.mqtt import NO_STATE, parse_state  # paho only where MQTT is in use

    if payload.strip().lower() in NO_STATE:
        return "unavailable"
    state = (parse_state(device, payload).state or "").strip().lower()
    unit = (device.unit or "").lower()
    return state[: -len(unit)].strip() if unit and state.endswith(unit) else state
