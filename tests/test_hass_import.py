"""`agentd home import`, state triggers and `agentd doctor` against a real Home Assistant 2024.3.3.

Areas, area assignments and Assist exposure are set the way the person would in Home
Assistant's UI (its websocket API), then agentd reads them back.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import yaml

from agent.cli.doctor import check_hass
from agent.home_control import HomeService
from agent.home_control.state_watch import StateWatch
from agent.schedule import Runtime, Scheduler
from agent.config.settings import load_settings
from agent.store import Store
from agent.voice.stt import hint_prompt
from agentd import main
from fakes import run, until
from hass_server import hass  # noqa: F401  (a fixture)
from scheduling import serving

TOKEN_ENV = "HASS_TOKEN"  # what the default config names


@pytest.fixture(scope="module")
def arranged(hass):  # noqa: F811
    """Two areas with entities in them, and one light exposed to Assist, another not."""
    hass.ws("config/area_registry/create", name="Garden")  # onboarding made Kitchen
    for entity_id, area in [("light.kitchen", "kitchen"), ("lock.shed_door", "garden"),
                            ("input_boolean.hall_motion", "garden")]:
        hass.ws("config/entity_registry/update", entity_id=entity_id, area_id=area)
    hass.ws("config/entity_registry/update", entity_id="light.hall", name="Porch lamp")
    hass.ws("homeassistant/expose_entity", assistants=["conversation"],
            entity_ids=["light.hall"], should_expose=True)
    hass.ws("homeassistant/expose_entity", assistants=["conversation"],
            entity_ids=["light.kitchen"], should_expose=False)
    return hass


def agentd(tmp_path, capsys, *args) -> tuple[int, str, str]:
    code = main(["home", "import", "--home", str(tmp_path / "home"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_without_a_choice_it_lists_and_imports_nothing(arranged, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, arranged.token)
    code, out, _ = agentd(tmp_path, capsys, "--url", arranged.url)
    assert code == 0
    assert "kitchen:\n  light.kitchen " in out
    assert "lock.shed_door" in out and "porch lamp  exposed" in out
    assert "nothing is imported unless you choose it" in out
    assert "entity_id" not in out  # no config block


def test_an_area_becomes_an_editable_config_block(arranged, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, arranged.token)
    out_file = tmp_path / "imported.yaml"
    code, out, _ = agentd(tmp_path, capsys, "--url", arranged.url, "--area", "Garden",
                          "--area", "kitchen", "--out", str(out_file))
    assert code == 0 and "wrote 3 devices" in out
    block = yaml.safe_load(out_file.read_text())
    assert block["home"]["hass"]["url"] == arranged.url
    assert block["home"]["devices"] == [
        {"name": "hall motion", "kind": "switch", "room": "garden", "entity_id": "input_boolean.hall_motion"},
        {"name": "kitchen light", "kind": "light", "room": "kitchen", "entity_id": "light.kitchen"},
        {"name": "shed door", "kind": "lock", "room": "garden", "entity_id": "lock.shed_door"},
    ]
    # The block is a valid config as it stands, and its names reach the phrase path and Whisper.
    service = HomeService.from_settings(load_settings(out_file).home)
    from agent.daemon.assembly import device_slots

    slots = device_slots(service)
    assert "kitchen light" in slots["device"] and "shed door" in slots["secure_device"]
    assert "kitchen light" in hint_prompt(slots["device"])
    # Never written over: a second import to the same file is refused and changes nothing.
    before = out_file.read_text()
    code, _, err = agentd(tmp_path, capsys, "--url", arranged.url, "--domain", "light", "--out", str(out_file))
    assert code == 1 and "already exists" in err and out_file.read_text() == before


def test_exposed_and_domain_choose_together(arranged, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, arranged.token)
    code, out, _ = agentd(tmp_path, capsys, "--url", arranged.url, "--exposed", "--domain", "light")
    devices = yaml.safe_load(out)["home"]["devices"]
    names = [d["name"] for d in devices]
    assert "porch lamp" in names and "kitchen light" not in names
    assert all(d["entity_id"].startswith("light.") for d in devices)


def test_a_bad_token_or_no_server_is_one_clear_line(arranged, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "not-a-token")
    code, _, err = agentd(tmp_path, capsys, "--url", arranged.url)
    assert code == 1 and err.strip().endswith("refused the access token: make a new long-lived token "
                                              "on its profile page")
    monkeypatch.delenv(TOKEN_ENV)
    code, _, err = agentd(tmp_path, capsys, "--url", arranged.url)
    assert code == 1 and "no Home Assistant access token: put a long-lived token in $HASS_TOKEN" in err


def test_doctor_checks_reachability_and_token(arranged, monkeypatch):
    settings = load_settings(overrides={"home": {"hass": {"url": arranged.url}}})
    monkeypatch.setenv(TOKEN_ENV, arranged.token)
    good = check_hass({"settings": settings})
    assert good.ok and good.detail.startswith(f"Home Assistant 2024.3.3 at {arranged.url} takes the token")
    monkeypatch.setenv(TOKEN_ENV, "not-a-token")
    bad = check_hass({"settings": settings})
    assert bad.ok is False and "refused the access token (401)" in bad.detail
    gone = load_settings(overrides={"home": {"hass": {"url": "http://127.0.0.1:9"}}})
    assert "cannot reach Home Assistant at http://127.0.0.1:9" in check_hass({"settings": gone}).detail


# -- state triggers on a Home Assistant device ------------------------------------------------

MOTION = {"name": "hall motion", "room": "hall", "kind": "sensor", "entity_id": "input_boolean.hall_motion"}


def trigger_settings(server, hold=None):
    state = {"device": "hall motion", "to": "on", **({"for": hold} if hold else {})}
    rule = {"id": "hall-lights", "trigger": {"state": state}, "action": {"say": "motion in the hall"}}
    hass_settings = {"url": server.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    return load_settings(overrides={"home": {"hass": hass_settings, "devices": [MOTION]},
                                    "automations": [rule]})


@contextlib.asynccontextmanager
async def watching(tmp_path, store, settings):
    """A served Scheduler whose state hook is a StateWatch on a real HomeService, as in cmd_run."""
    service = HomeService.from_settings(settings.home)
    service.start()
    assert await asyncio.to_thread(service.hass.link.wait_loaded, 10)
    heard = []
    watch = StateWatch(lambda: service, lambda job_id, spec: scheduler.fire(job_id, spec))
    scheduler = Scheduler(tmp_path, settings, runtime=Runtime(store=store, notify=heard.append), state_hook=watch)
    try:
        async with serving(scheduler):
            yield scheduler, heard
    finally:
        watch.close()
        service.stop()


def fired(store) -> int:
    return len(store.receipts(job_id="hall-lights"))


def test_a_home_assistant_device_fires_a_state_trigger(hass, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, hass.token)
    hass.call("input_boolean", "turn_on", entity_id="input_boolean.hall_motion")  # where things stand

    async def go(store):
        async with watching(tmp_path, store, trigger_settings(hass)) as (scheduler, heard):
            assert scheduler.problems == []
            await asyncio.sleep(0.3)
            assert fired(store) == 0  # on already at start: not a change
            for word in ("off", "on"):
                await asyncio.to_thread(hass.call, "input_boolean", f"turn_{word}",
                                        entity_id="input_boolean.hall_motion")
            await until(lambda: fired(store) == 1)
            await asyncio.to_thread(hass.call, "input_boolean", "turn_on",
                                    entity_id="input_boolean.hall_motion")  # no change: no run
            await asyncio.sleep(0.3)
            assert fired(store) == 1
            return [a.text for a in heard]

    with Store.open_in(tmp_path) as store:
        assert run(go(store)) == ["motion in the hall"]


def test_without_a_token_a_home_assistant_trigger_is_a_problem(hass, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = trigger_settings(hass)
    service = HomeService.from_settings(settings.home)

    async def problems(store):
        watch = StateWatch(lambda: service, lambda job_id, spec: scheduler.fire(job_id, spec))
        scheduler = Scheduler(tmp_path, settings, runtime=Runtime(store=store, notify=print), state_hook=watch)
        async with serving(scheduler):
            return scheduler.problems

    with Store.open_in(tmp_path) as store:
        assert run(problems(store)) == [
            "automation 'hall-lights': trigger.state: device: hall motion is a Home Assistant entity, "
            "and there is no Home Assistant token, so its state is never heard"]


def test_after_a_gap_states_are_reloaded_as_where_things_stand(hass, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, hass.token)
    hass.call("input_boolean", "turn_off", entity_id="input_boolean.hall_motion")
    settings = trigger_settings(hass)
    settings = settings.model_copy(update={"home": settings.home.model_copy(update={
        "hass": settings.home.hass.model_copy(update={"reconnect_min_s": 1.0})})})

    async def go(store):
        async with watching(tmp_path, store, settings) as (scheduler, _):
            link = scheduler.state_hook.home().hass.link
            link._sock.close()  # the connection drops, as when Wi-Fi goes
            await until(lambda: not link.loaded)
            await asyncio.to_thread(hass.call, "input_boolean", "turn_on",
                                    entity_id="input_boolean.hall_motion")  # missed: no subscription
            await until(lambda: link.loaded, timeout=10)  # reconnected, subscribed, reloaded
            assert link.state("input_boolean.hall_motion")["state"] == "on"
            await asyncio.sleep(0.3)
            assert fired(store) == 0  # learnt on reload: where things stand, not a change seen
            for word in ("off", "on"):  # pushed again on the new subscription
                await asyncio.to_thread(hass.call, "input_boolean", f"turn_{word}",
                                        entity_id="input_boolean.hall_motion")
            await until(lambda: fired(store) == 1)

    with Store.open_in(tmp_path) as store:
        run(go(store))
