"""State triggers against a real mosquitto broker: a device's state, published, runs an automation."""

from __future__ import annotations

import asyncio
import contextlib
import time

import paho.mqtt.client as paho
import pytest

from agent.home_control import HomeService
from agent.home_control.state_watch import StateWatch
from agent.schedule import Runtime, Scheduler
from agent.config.settings import load_settings
from agent.store import Store
from fakes import run, until
from mosquitto import HOST, broker  # noqa: F401  (broker is a fixture)
from scheduling import serving

MOTION = "home/hall/motion"
DEVICES = [
    {"name": "hall motion", "room": "hall", "kind": "sensor", "aliases": ["hall_motion"],
     "mqtt": {"state_topic": MOTION}},
    {"name": "hall light", "room": "hall", "kind": "light",
     "mqtt": {"command_topic": "home/hall/light/set", "state_topic": "home/hall/light"}},
]


def automation(id="hall-lights", device="hall_motion", to="on", hold=None):
    state = {"device": device, "to": to, **({"for": hold} if hold is not None else {})}
    return {"id": id, "trigger": {"state": state}, "action": {"say": f"{device} is {to}"}}


def settings_for(port: int, *automations):
    mqtt = {"host": HOST, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    return load_settings(overrides={"home": {"mqtt": mqtt, "devices": DEVICES}, "automations": list(automations)})


class Publisher:
    """Plays the device: publishes its state on the broker."""

    def __init__(self, port: int):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"device-{time.monotonic_ns()}")
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish(self, payload: str, retain: bool = False) -> None:
        self.client.publish(MOTION, payload, qos=1, retain=retain).wait_for_publish(5)

    async def say(self, payload: str, retain: bool = False) -> None:
        await asyncio.to_thread(self.publish, payload, retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def store(tmp_path):
    with Store.open_in(tmp_path) as opened:
        yield opened


@pytest.fixture
def device(broker):  # noqa: F811
    publisher = Publisher(broker.port)
    yield publisher
    publisher.close()


class Home:
    """The HomeService the daemon would have (app.home_control), replaceable as on reload."""

    def __init__(self, settings):
        self.service = None
        self.swap(settings)

    def swap(self, settings) -> HomeService:
        if self.service is not None:
            self.service.stop()
        self.service = HomeService.from_settings(settings.home)
        self.service.start()
        assert self.service.mqtt.wait_connected(5)
        return self.service

    def stop(self) -> None:
        self.service.stop()


@contextlib.asynccontextmanager
async def watching(tmp_path, store, settings):
    """A served Scheduler whose state hook is a StateWatch on a real HomeService, as in cmd_run."""
    home = await asyncio.to_thread(Home, settings)
    heard = []
    watch = StateWatch(lambda: home.service, lambda job_id, spec: scheduler.fire(job_id, spec))
    scheduler = Scheduler(tmp_path, settings, runtime=Runtime(store=store, notify=heard.append), state_hook=watch)
    try:
        async with serving(scheduler):
            await asyncio.sleep(0.3)  # the subscription's retained states, if any, have arrived
            yield scheduler, home, heard
    finally:
        watch.close()
        home.stop()


def fired(store, job_id="hall-lights") -> int:
    return len(store.receipts(job_id=job_id))


def test_a_device_turning_on_fires_its_automation_once_per_change(tmp_path, store, broker, device):  # noqa: F811
    async def go():
        async with watching(tmp_path, store, settings_for(broker.port, automation())) as (scheduler, _, heard):
            assert scheduler.problems == []
            await device.say("ON")
            await until(lambda: fired(store) == 1)
            await device.say("ON")  # the same state again is no change
            await device.say("on")
            await asyncio.sleep(0.5)
            assert fired(store) == 1
            await device.say("OFF")
            await device.say("ON")
            await until(lambda: fired(store) == 2)
            await asyncio.sleep(0.3)
            return heard

    heard = run(go())
    assert [r.outcome for r in store.receipts()] == ["ok", "ok"]
    assert [a.text for a in heard] == ["hall_motion is on", "hall_motion is on"]


def test_a_retained_state_at_start_is_where_things_stand_not_a_change(tmp_path, store, broker, device):  # noqa: F811
    device.publish("ON", retain=True)

    async def go():
        async with watching(tmp_path, store, settings_for(broker.port, automation())):
            await asyncio.sleep(0.5)
            assert fired(store) == 0
            await device.say("OFF")
            await device.say("ON")
            await until(lambda: fired(store) == 1)

    run(go())


def test_for_fires_only_when_the_state_holds(tmp_path, store, broker, device):  # noqa: F811
    async def go():
        async with watching(tmp_path, store, settings_for(broker.port, automation(hold="1s"))):
            await device.say("ON")
            await asyncio.sleep(0.2)
            await device.say("OFF")  # back within 0.3 s: it did not hold
            await asyncio.sleep(1.5)
            assert fired(store) == 0
            started = time.monotonic()
            await device.say("ON")
            await until(lambda: fired(store) == 1, timeout=5)
            held = time.monotonic() - started
            await asyncio.sleep(0.3)
            return held

    held = run(go())
    assert held >= 0.9 and fired(store) == 1


def test_the_watch_follows_a_reloaded_home_service(tmp_path, store, broker, device):  # noqa: F811
    settings = settings_for(broker.port, automation())

    async def go():
        async with watching(tmp_path, store, settings) as (scheduler, home, _):
            old = home.service
            await asyncio.to_thread(home.swap, settings)  # App.reload: a new HomeService
            assert scheduler.reload(settings).problems == []  # ...then the scheduler's re-sync
            assert home.service is not old
            await device.say("ON")
            await until(lambda: fired(store) == 1)

    run(go())


def test_an_unknown_device_is_a_problem_at_load(tmp_path, store, broker):  # noqa: F811
    settings = settings_for(broker.port, automation("garage", device="garage door"),
                            automation("hall", device="hall", to="on"), automation("ok"))
    service = HomeService.from_settings(settings.home)  # not started: loading needs no broker
    scheduler = Scheduler.offline(tmp_path, settings, store)
    scheduler.state_hook = StateWatch(lambda: service, scheduler.fire)
    try:
        report = scheduler.sync_automations()
    finally:
        scheduler.shutdown()
    assert report.problems[0].startswith("automation 'garage': trigger.state: no device or room called 'garage door'")
    assert report.problems[1] == "automation 'hall': trigger.state: device: 'hall' names several devices; name one"
    assert len(report.problems) == 2 and scheduler.problems == report.problems
