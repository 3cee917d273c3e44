"""Cameras from files and commands: look_at_camera through the executor, the limits on a
snapshot, keeping snapshots only when asked, the config's checks, and a camera check as an
automation that speaks its answer. MQTT cameras: test_cameras_mqtt.py; Home Assistant
cameras: test_hass_real.py."""

from __future__ import annotations

import asyncio
import stat
import sys
from datetime import UTC, datetime, timedelta

import pytest

from agent.actions import Action, Executor
from agent.config.settings import ConfigError, load_settings
from agent.events import ToolFinished
from agent.home_control import start_home
from agent.schedule import Runtime, Scheduler
from agent.store import Store
from agent.testkit.scripted_llm import ScriptedLLM, xml_call
from agent.tools import ToolRegistry
from agent.turn import Agent
from cameras import SeeingScript, load_home_tools, picture
from fakes import run, until
from scheduling import serving

tools = load_home_tools()


def cameras_config(tmp_path, *, cameras=None, **limits):
    """Three cameras: a file, a command that prints the same file, and one command given per test."""
    shot = tmp_path / "garage.jpg"
    if not shot.exists():
        shot.write_bytes(picture(64, 48, (200, 40, 40)))
    printer = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write(open({str(shot)!r}, 'rb').read())"]
    devices = [
        {"name": "garage camera", "room": "garage", "kind": "camera", "snapshot": {"file": str(shot)}},
        {"name": "porch camera", "room": "porch", "kind": "camera", "aliases": ["doorbell"],
         "snapshot": {"command": printer}},
        {"name": "porch light", "room": "porch", "kind": "light", "mqtt": {"command_topic": "x/set"}},
        *(cameras or []),
    ]
    return load_settings(overrides={"home": {"mqtt": {"host": "127.0.0.1", "port": 1}, "devices": devices,
                                             "cameras": {"timeout_s": 5, **limits}}})


def command_camera(name: str, code: str) -> dict:
    return {"name": name, "kind": "camera", "snapshot": {"command": [sys.executable, "-c", code]}}


@pytest.fixture
def home_folder(tmp_path):
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def service_for(settings, home_folder):
    return start_home(settings, snapshots_dir=home_folder / "snapshots")


def look(service, vision, camera="garage camera", question="Is the garage door open?"):
    """One look_at_camera call through the executor, as a model turn's would go."""
    registry = ToolRegistry()
    registry.add_module(tools)
    executor = Executor(registry, home_control=service, vision=vision)
    return run(executor.run(Action(tool="look_at_camera", arguments={"camera": camera, "question": question})))


def test_a_file_camera_is_looked_at_and_nothing_is_written(tmp_path, home_folder):
    service = service_for(cameras_config(tmp_path), home_folder)
    vision = SeeingScript()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        outcome = look(service, vision)
    finally:
        service.stop()
    assert outcome.ok, outcome
    answer, details = outcome.result.split("\n")
    assert answer == "Yes: the garage door is open."
    assert details.startswith("(garage camera: ") and "JPEG from file" in details and " s old)" in details
    [(size, centre, question)] = vision.seen
    assert size == (64, 48) and question == "Is the garage door open?"
    assert abs(centre[0] - 200) < 8 and centre[1] < 60  # the file's red picture, decoded
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no snapshot kept by default
    assert not (home_folder / "snapshots").exists()


def test_a_command_camera_and_a_room_or_alias_name_it(tmp_path, home_folder):
    service = service_for(cameras_config(tmp_path), home_folder)
    try:
        by_alias = look(service, SeeingScript("A parcel is on the step."), camera="doorbell", question="Parcel?")
        by_room = look(service, SeeingScript("No one."), camera="porch")
    finally:
        service.stop()
    assert by_alias.ok and by_alias.result.startswith("A parcel is on the step.\n(porch camera: ")
    assert "JPEG from command" in by_alias.result
    assert by_room.ok and by_room.result.startswith("No one.\n(porch camera")


def test_unknown_names_and_devices_that_are_not_cameras_list_the_cameras(tmp_path, home_folder):
    service = service_for(cameras_config(tmp_path), home_folder)
    try:
        unknown = look(service, SeeingScript(), camera="attic")
        light = look(service, SeeingScript(), camera="porch light")
    finally:
        service.stop()
    for outcome in (unknown, light):
        assert outcome.status == "error"
        assert "cameras: garage camera (camera in the garage), porch camera (camera in the porch)" in outcome.result
    assert "no camera called 'attic'" in unknown.result


def test_without_a_vision_engine_the_tool_says_how_to_get_one(tmp_path, home_folder):
    service = service_for(cameras_config(tmp_path), home_folder)
    try:
        outcome = look(service, None)
    finally:
        service.stop()
    assert outcome.status == "error"
    assert "cannot see pictures" in outcome.result and "agentd[vision]" in outcome.result


BROKEN = {
    "fails": "import sys; sys.stderr.write('warming up\\nno video device /dev/video0\\n'); sys.exit(3)",
    "hangs": "import time; time.sleep(30)",
    "floods": "import sys; sys.stdout.buffer.write(b'\\xff\\xd8\\xff' + b'x' * 300000)",
    "chatty": "import sys; sys.stderr.write('x' * 500000); sys.exit(1)",
    "texty": "print('<html>Login required</html>')",
    "silent": "pass",
}


@pytest.mark.parametrize("name, expected", [
    ("fails", "failed with exit code 3: no video device /dev/video0"),
    ("hangs", "did not finish within 1 s (home.cameras.timeout_s)"),
    ("floods", "over home.cameras.max_snapshot_bytes (200000 bytes)"),
    ("chatty", "failed with exit code 1"),  # a full stderr pipe does not stall it
    ("texty", "is not a JPEG or PNG picture (it starts with b'<html>Login '"),
    ("silent", "gave an empty picture"),
])
def test_a_camera_that_cannot_give_a_picture_says_why(tmp_path, home_folder, name, expected):
    settings = cameras_config(tmp_path, cameras=[command_camera("broken camera", BROKEN[name])],
                              timeout_s=1, max_snapshot_bytes=200_000)
    service = service_for(settings, home_folder)
    vision = SeeingScript()
    try:
        outcome = look(service, vision, camera="broken camera")
    finally:
        service.stop()
    assert outcome.status == "error" and expected in outcome.result, outcome.result
    assert vision.seen == []  # the model is never shown what is not a picture


def test_missing_files_programs_and_huge_files(tmp_path, home_folder):
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(picture(8, 8) + b"\0" * 300_000)
    settings = cameras_config(tmp_path, max_snapshot_bytes=200_000, cameras=[
        {"name": "gone camera", "kind": "camera", "snapshot": {"file": str(tmp_path / "nowhere.jpg")}},
        {"name": "huge camera", "kind": "camera", "snapshot": {"file": str(huge)}},
        {"name": "absent camera", "kind": "camera", "snapshot": {"command": ["no-such-snapshot-program", "-"]}},
    ])
    service = service_for(settings, home_folder)
    try:
        results = {name: look(service, SeeingScript(), camera=name).result
                   for name in ("gone camera", "huge camera", "absent camera")}
        listing = run(asyncio.to_thread(tools.list_devices, _ctx(service)))
    finally:
        service.stop()
    assert "cannot read gone camera's picture file" in results["gone camera"]
    assert "No such file or directory" in results["gone camera"]
    assert "over home.cameras.max_snapshot_bytes (200000 bytes)" in results["huge camera"]
    assert "cannot run absent camera's snapshot command 'no-such-snapshot-program'" in results["absent camera"]
    lines = dict(line.split(": ", 1) for line in listing.splitlines())
    assert lines["garage camera (camera in the garage)"].startswith("picture file written ")
    assert lines["gone camera (camera)"].startswith("unavailable: cannot read ")
    assert lines["porch camera (camera in the porch)"] == "takes a picture when asked"


def _ctx(service):
    from agent.tools import ToolContext

    return ToolContext(home_control=service)


def test_kept_snapshots_are_private_and_bounded(tmp_path, home_folder):
    settings = cameras_config(tmp_path, keep_snapshots=True, keep_count=2, cameras=[
        {"name": "shy camera", "kind": "camera", "keep": False, "snapshot": {"file": str(tmp_path / "garage.jpg")}},
    ])
    service = service_for(settings, home_folder)
    try:
        results = [look(service, SeeingScript()).result for _ in range(3)]
        shy = look(service, SeeingScript(), camera="shy camera")
    finally:
        service.stop()
    kept = sorted((home_folder / "snapshots").iterdir())
    assert len(kept) == 2 and all(p.name.endswith("-garage-camera.jpeg") for p in kept)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    assert kept[-1].read_bytes() == (tmp_path / "garage.jpg").read_bytes()
    assert results[-1].endswith(f"; kept as {kept[-1].name})")
    assert shy.ok and "kept as" not in shy.result
    assert stat.S_IMODE((home_folder / "snapshots").stat().st_mode) == 0o700


def test_one_camera_may_keep_its_snapshots_alone(tmp_path, home_folder):
    settings = cameras_config(tmp_path, cameras=[
        {"name": "yard camera", "kind": "camera", "keep": True, "snapshot": {"file": str(tmp_path / "garage.jpg")}},
    ])
    service = service_for(settings, home_folder)
    try:
        look(service, SeeingScript())
        look(service, SeeingScript(), camera="yard camera")
    finally:
        service.stop()
    assert [p.name.split("-", 3)[-1] for p in (home_folder / "snapshots").iterdir()] == ["yard-camera.jpeg"]


@pytest.mark.parametrize("entry, expected", [
    ({"name": "c", "kind": "camera"}, "a camera takes exactly one of 'entity_id'"),
    ({"name": "c", "kind": "camera", "snapshot": {}}, "give exactly one of 'file'"),
    ({"name": "c", "kind": "camera", "snapshot": {"command": "fswebcam -"}}, "snapshot.command: expected a list"),
    ({"name": "c", "kind": "camera", "snapshot": {"command": [""]}}, "command must name a program"),
    ({"name": "c", "kind": "camera", "mqtt": {"command_topic": "a"}}, "takes only mqtt.snapshot_topic"),
    ({"name": "c", "kind": "camera", "mqtt": {"snapshot_topic": "cams/#"}}, "no + or # wildcards"),
    ({"name": "c", "kind": "camera", "entity_id": "light.porch"}, "expected a camera entity such as 'camera.porch'"),
    ({"name": "c", "kind": "light", "entity_id": "light.x", "keep": True}, "'snapshot' and 'keep' are for cameras"),
    ({"name": "c", "kind": "light", "mqtt": {"command_topic": "a", "snapshot_topic": "b"}}, "snapshot_topic is for cameras"),
])
def test_bad_camera_entries_are_config_errors_that_say_what_to_write(entry, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"home": {"mqtt": {"host": "h"}, "hass": {"url": "http://h:8123"}, "devices": [entry]}})
    assert expected in str(caught.value) and "home.devices.0" in str(caught.value)


def test_a_camera_is_never_switched(tmp_path, home_folder):
    service = service_for(cameras_config(tmp_path), home_folder)
    registry = ToolRegistry()
    registry.add_module(tools)
    try:
        outcome = run(Executor(registry, home_control=service).run(
            Action(tool="set_device", arguments={"device": "garage camera", "state": "off"})))
    finally:
        service.stop()
    assert outcome.status == "error" and "garage camera is a camera: it can only be looked at" in outcome.result


def test_a_model_turn_hands_the_agents_vision_to_the_tool(tmp_path, home_folder):
    settings = cameras_config(tmp_path)
    service = service_for(settings, home_folder)
    registry = ToolRegistry()
    registry.add_module(tools)
    agent = Agent(llm=ScriptedLLM([xml_call("look_at_camera", camera="garage", question="Is the door open?"),
                                   "The garage door is open."]),
                  registry=registry, system_prompt="You are a test.", settings=settings)
    agent.home_control, agent.vision = service, SeeingScript()

    async def turn():
        return [event async for event in agent.respond("is the garage door open?", who="chat")]

    try:
        events = run(turn())
    finally:
        service.stop()
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.ok and finished.result.startswith("Yes: the garage door is open.\n(garage camera")
    assert agent.vision.seen[0][2] == "Is the door open?"


def test_a_scheduled_camera_check_speaks_its_answer(tmp_path, home_folder):
    due = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    check = {"id": "garage-check", "trigger": {"at": due}, "speak": True,
             "action": {"tool": "look_at_camera", "args": {"camera": "garage camera",
                                                           "question": "Is the garage door open?"}}}
    settings = cameras_config(tmp_path).model_copy(update={"automations": [check]})
    service = service_for(settings, home_folder)
    registry = ToolRegistry()
    registry.add_module(tools)
    heard, vision = [], SeeingScript("Yes, it is open.")
    with Store.open_in(tmp_path) as store:
        runtime = Runtime(store=store, registry=registry, settings=settings, notify=heard.append,
                          home_control=service, vision=vision)

        async def go():
            async with serving(Scheduler(home_folder, settings, runtime=runtime)) as scheduler:
                assert scheduler.problems == []
                await until(lambda: store.receipts(), timeout=10)

        try:
            run(go())
        finally:
            service.stop()
        [receipt] = store.receipts()
        audit = [(e.tool, e.outcome, e.who) for e in store.audit_entries()]
    assert receipt.outcome == "ok" and receipt.output.startswith("Yes, it is open.\n(garage camera")
    [spoken] = heard
    assert spoken.speak and spoken.text == receipt.output
    assert audit == [("look_at_camera", "ok", "schedule:garage-check")]
    assert not (home_folder / "snapshots").exists()


def test_status_doctor_and_home_cameras_list_the_cameras(tmp_path, home_folder, capsys):
    import yaml

    from agent.cli.doctor import check_cameras
    from agent.cli.main import main

    settings = cameras_config(tmp_path, cameras=[
        {"name": "gone camera", "kind": "camera", "snapshot": {"file": str(tmp_path / "nowhere.jpg")}},
        command_camera("texty camera", BROKEN["texty"]),
    ])
    service = service_for(settings, home_folder)
    try:
        lines = service.camera_lines()
    finally:
        service.stop()
    assert lines[0].startswith(f"garage camera: file {tmp_path / 'garage.jpg'}, written ") and lines[0].endswith(" s ago")
    assert lines[1] == f"porch camera: command {sys.executable} -c import sys; " + lines[1].split("; ", 1)[1]
    assert lines[2] == f"gone camera: file {tmp_path / 'nowhere.jpg'}, No such file or directory"

    doctor = check_cameras({"settings": settings})
    assert doctor.ok is None and f"gone camera ({tmp_path / 'nowhere.jpg'} is missing or unreadable)" in doctor.detail
    assert "garage camera (file " in doctor.detail and "agentd home cameras" in doctor.fix
    assert check_cameras({"settings": load_settings()}).detail == "none configured"

    devices = [d.model_dump(mode="json", exclude_none=True) for d in settings.home.devices if d.kind == "camera"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"home": {"devices": devices}}))
    out_folder = tmp_path / "out"
    code = main(["home", "cameras", "--home", str(home_folder), "--config", str(config), "--out", str(out_folder)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("garage camera: ") and "JPEG from file" in out[0] and "saved as" in out[0]
    assert out[2].startswith("gone camera: no picture: cannot read gone camera's picture file")
    assert out[3].startswith("texty camera: no picture: what texty camera gave (command ")
    assert sorted(p.name for p in out_folder.iterdir()) == ["garage-camera.jpeg", "porch-camera.jpeg"]
    assert not (home_folder / "snapshots").exists()
