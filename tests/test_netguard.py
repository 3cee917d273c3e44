"""Offline, measured: in a network namespace whose only interface is loopback with one more
address (the home's broker), a skill tool that reaches for an outside address is refused and
recorded, while the configured broker still works."""

import json
import shutil
import subprocess
import sys

import pytest

from daemon_proc import REPO, child_env
from mosquitto import MOSQUITTO
from test_offline import namespace_command

pytestmark = pytest.mark.slow

BROKER = "10.9.8.7"  # not loopback: the guard must let it through only because the config names it

SCRIPT = """
ip link set lo up && ip addr add {broker}/32 dev lo || exit 9
printf 'listener 18830 {broker}\\nallow_anonymous true\\nuser root\\npersistence false\\n' > "$1/mosquitto.conf"
{mosquitto} -c "$1/mosquitto.conf" -d || exit 8
for i in $(seq 50); do "$2" -c 'import socket; socket.create_connection(("{broker}", 18830), 0.2)' 2>/dev/null && break; sleep 0.1; done
"$2" "$3" {broker} 18830
"""


def test_a_skill_reaching_outside_is_refused_and_recorded_the_configured_broker_works(tmp_path):
    unshare = namespace_command()
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    if unshare != ["unshare", "-n"]:
        pytest.skip("adding an address to loopback needs root's `unshare -n`")
    script = SCRIPT.format(broker=BROKER, mosquitto=MOSQUITTO)
    done = subprocess.run([*unshare, "sh", "-c", script, "sh", str(tmp_path), sys.executable,
                           str(REPO / "tests" / "netguard_probe.py")],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout.splitlines()[-1])

    weather_ok, weather_said = report["weather"]
    assert not weather_ok
    assert weather_said == ("Error: could not reach the weather service: agentd is offline: a connection to "
                            "'203.0.113.7:80' was refused (only the MQTT broker and Home Assistant named "
                            "in the config may be reached)")
    assert report["broker_connected"] and report["broker_heard"]
    assert report["light"] == [True, "kitchen light is on"]

    network = report["network"]
    refused = [a for a in network["last"] if a["outcome"] == "refused"]
    assert [a["to"] for a in refused] == ["203.0.113.7:80"] and network["refused"] == 1
    assert network["allowed_hosts"] == [BROKER] and network["reached"] == [f"{BROKER}:18830"]
    assert report["offline"] is False  # it did reach a machine beyond loopback: the configured broker
