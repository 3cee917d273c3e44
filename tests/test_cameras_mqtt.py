"""MQTT cameras on a real mosquitto broker: a peer publishes real JPEGs on a snapshot topic,
and a motion sensor's state trigger runs a camera check that speaks its answer."""

from __future__ import annotations

import asyncio
import time

import paho.mqtt.client as paho
import pytest

from agent.actions import Action, Executor
from agent.config.settings import load_settings
from agent.home_control import start_home
from agent.home_control.state_watch import StateWatch
from agent.schedule import Runtime, Scheduler
from agent.store import Store
from agent.tools import ToolContext, ToolRegistry
from cameras import SeeingScript, load_home_tools, picture
from fakes import run, until
from mosquitto import HOST, broker  # noqa: F401  (broker is a fixture)
from scheduling import serving

tools = load_home_tools("home_skill_tools_under_test_cameras_mqtt")
PORCH, YARD, MOTION = "cams/porch/snapshot", "cams/yard/snapshot", "home/porch/motion"
DEVICES = [
    {"name": "porch camera", "room": "porch", "kind": "camera", "mqtt": {"snapshot_topic": PORCH}},
    {"name": "yard camera", "room": "yard", "kind": "camera", "mqtt": {"snapshot_topic": YARD}},
    {"name": "porch motion", "room": "porch", "kind": "sensor", "mqtt": {"state_topic": MOTION}},
]


def settings_for(port: int, automations=(), **cameras):
    mqtt = {"host": HOST, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    return load_settings(overrides={"home": {"mqtt": mqtt, "devices": DEVICES, "cameras": cameras},
                                    "automations": list(automations)})


class Camera:
    """Plays the cameras and the sensor: publishes on the broker as they would."""

    def __init__(self, port: int):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"camera-{time.monotonic_ns()}")
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def camera(broker):  # noqa: F811
    peer = Camera(broker.port)
    yield peer
    peer.close()


def subscribed(service) -> None:
    """Wait until agentd's client is connected and its subscriptions have settled (a message
    published before its SUBACK would pass it by)."""
    assert service.mqtt.wait_connected(5)
    time.sleep(0.5)


def look(service, vision, camera="porch camera", question="Is there a parcel?"):
    registry = ToolRegistry()
    registry.add_module(tools)
    executor = Executor(registry, home_control=service, vision=vision)
    return run(executor.run(Action(tool="look_at_camera", arguments={"camera": camera, "question": question})))


def test_the_latest_picture_is_used_retained_ones_count_and_age_is_told(broker, camera, tmp_path):  # noqa: F811
    camera.publish(PORCH, picture(64, 48, (200, 40, 40)), retain=True)  # before agentd is there
    service = start_home(settings_for(broker.port), snapshots_dir=tmp_path / "snapshots")
    vision = SeeingScript("A parcel is on the step.")
    try:
        first = look(service, vision)
        camera.publish(PORCH, picture(32, 32, (30, 30, 220)))  # a newer, live picture
        time.sleep(0.3)
        second = look(service, vision)
        empty = look(service, vision, camera="yard camera")
        listing = tools.list_devices(ToolContext(home_control=service), room="porch")
    finally:
        service.stop()
    assert first.ok and first.result.startswith("A parcel is on the step.\n(porch camera: ")
    assert "JPEG from MQTT topic cams/porch/snapshot" in first.result
    assert "s or more (a retained message) old" in first.result
    assert second.ok and "retained" not in second.result
    (size1, centre1, _), (size2, centre2, _) = vision.seen
    assert size1 == (64, 48) and centre1[0] > 150 and size2 == (32, 32) and centre2[2] > 150
    assert empty.status == "error" and "no picture has arrived on cams/yard/snapshot yet" in empty.result
    assert "porch camera (camera in the porch): last picture 0 s ago" in listing
    assert not (tmp_path / "snapshots").exists()


def test_oversized_and_non_picture_messages_are_refused(broker, camera):  # noqa: F811
    service = start_home(settings_for(broker.port, max_snapshot_bytes=50_000))
    try:
        subscribed(service)
        camera.publish(PORCH, picture(16, 16) + b"\0" * 60_000)
        camera.publish(YARD, "motion detected")  # text where a picture belongs
        time.sleep(0.3)
        huge = look(service, SeeingScript())
        text = look(service, SeeingScript(), camera="yard camera")
        camera.publish(PORCH, picture(16, 16))  # a good one replaces the refusal
        time.sleep(0.3)
        fine = look(service, SeeingScript())
    finally:
        service.stop()
    assert "the last picture on cams/porch/snapshot was 60" in huge.result
    assert "over home.cameras.max_snapshot_bytes (50000)" in huge.result
    assert "is not a JPEG or PNG picture (it starts with b'motion detec'" in text.result
    assert fine.ok


def test_a_picture_outlives_a_broker_outage_with_its_age(broker, camera):  # noqa: F811
    service = start_home(settings_for(broker.port))
    try:
        subscribed(service)
        camera.publish(PORCH, picture(16, 16, format="PNG"))
        time.sleep(0.3)
        broker.stop()
        time.sleep(0.3)
        outcome = look(service, SeeingScript("Nothing there."))
        empty = look(service, SeeingScript(), camera="yard camera")
    finally:
        service.stop()
    assert outcome.ok and "PNG from MQTT topic" in outcome.result
    assert "not connected to the MQTT broker" in empty.result and "no picture has arrived" in empty.result


def test_motion_on_the_porch_runs_a_camera_check_that_speaks(broker, camera, tmp_path):  # noqa: F811
    check = {"id": "porch-check", "trigger": {"state": {"device": "porch motion", "to": "on"}}, "speak": True,
             "action": {"tool": "look_at_camera", "args": {"camera": "porch camera",
                                                           "question": "Who is at the door?"}}}
    settings = settings_for(broker.port, [check])
    registry = ToolRegistry()
    registry.add_module(tools)
    vision, heard = SeeingScript("A courier with a parcel."), []

    async def go(store):
        service = await asyncio.to_thread(start_home, settings)
        watch = StateWatch(lambda: service, lambda job_id, spec: scheduler.fire(job_id, spec))
        runtime = Runtime(store=store, registry=registry, settings=settings, notify=heard.append,
                          home_control=service, vision=vision)
        scheduler = Scheduler(tmp_path, settings, runtime=runtime, state_hook=watch)
        try:
            async with serving(scheduler):
                assert scheduler.problems == []
                await asyncio.sleep(0.3)
                await asyncio.to_thread(camera.publish, PORCH, picture(40, 30))
                await asyncio.to_thread(camera.publish, MOTION, "on")
                await until(lambda: store.receipts(job_id="porch-check"), timeout=10)
        finally:
            watch.close()
            service.stop()

    with Store.open_in(tmp_path) as store:
        run(go(store))
        [receipt] = store.receipts(job_id="porch-check")
    assert receipt.outcome == "ok", receipt
    assert [(a.text.split("\n")[0], a.speak) for a in heard] == [("A courier with a parcel.", True)]
    assert vision.seen[0][0] == (40, 30) and vision.seen[0][2] == "Who is at the door?"
