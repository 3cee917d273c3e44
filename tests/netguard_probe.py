"""Run inside a network namespace by test_netguard: agentd's network guard in a real process,
a skill tool that reaches for an outside address, and the home skill on a configured broker.

`python netguard_probe.py BROKER_HOST BROKER_PORT`; prints one JSON object.
"""

import asyncio
import importlib.util
import json
import sys
import threading
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

import paho.mqtt.client as paho  # noqa: E402

from agent.events import ToolFinished  # noqa: E402
from agent.home_control import start_home  # noqa: E402
from agent.daemon.netguard import NetGuard, configured_hosts  # noqa: E402
from agent.config.settings import load_settings  # noqa: E402
from agent.tools import ToolRegistry  # noqa: E402
from agent.turn import Agent  # noqa: E402
from agent.testkit.scripted_llm import ScriptedLLM, xml_call  # noqa: E402

LIGHT = {"name": "kitchen light", "room": "kitchen", "kind": "light",
         "mqtt": {"command_topic": "home/kitchen/light/set", "state_topic": "home/kitchen/light"}}


def module(path: Path):
    spec = importlib.util.spec_from_file_location(path.parent.name + "_tools", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def turn(registry: ToolRegistry, call: str, home_control=None) -> ToolFinished:
    agent = Agent(llm=ScriptedLLM([call, "Done."]), registry=registry, system_prompt="You run the home.")
    agent.home_control = home_control  # as the daemon's assembly hands it in

    async def run():
        return [e async for e in agent.respond("do it") if isinstance(e, ToolFinished)]

    return asyncio.run(run())[0]


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    settings = load_settings(overrides={"home": {"mqtt": {"host": host, "port": port, "state_wait_s": 0.5},
                                                 "devices": [LIGHT]}})
    guard = NetGuard(configured_hosts(settings)).install()

    heard = threading.Event()
    peer = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="peer")
    def play_the_light(client, userdata, message) -> None:  # as the device would: ON comes back as its state
        heard.set()
        client.publish("home/kitchen/light", message.payload, retain=True)

    peer.on_message = play_the_light
    peer.connect(host, port)
    peer.subscribe("home/kitchen/light/set")
    peer.loop_start()
    home = start_home(settings)
    connected = home.mqtt.wait_connected(5)

    registry = ToolRegistry()
    registry.add_module(module(TESTS / "fixtures" / "skills" / "weather_online" / "tools.py"), skill="weather_online")
    registry.add_module(module(TESTS.parent / "skills" / "home" / "tools.py"), skill="home")
    weather = turn(registry, xml_call("weather_online", city="Berlin"))
    light = turn(registry, xml_call("set_device", device="kitchen light", state="on"), home)
    print(json.dumps({"broker_connected": connected, "broker_heard": heard.wait(5),
                      "weather": [weather.ok, weather.result], "light": [light.ok, light.result],
                      **guard.status()}))
    home.stop()
    peer.loop_stop()


if __name__ == "__main__":
    main()
