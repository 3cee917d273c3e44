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
trap 'kill $(cat "$1/mosquitto.pid" 2>/dev/null) 2>/dev/null' EXIT  # the broker dies with the namespace's script
ip link set lo up && ip addr add {broker}/32 dev lo || exit 9
printf 'listener 18830 {broker}\\nallow_anonymous true\\nuser root\\npersistence false\\npid_file %s/mosquitto.pid\\n' "$1" > "$1/mosquitto.conf"
{mosquitto} -c "$1/mosquitto.conf" -d || exit 8
for i in $(seq 50); do "$2" -c 'import socket; socket.create_connection(("{broker}", 18830), 0.2)' 2>/dev/null && break; sleep 0.1; done
"$2" "$3" {configured} 18830
"""
# A broker configured by name: the name resolves (through a private /etc/hosts) to the address.
BY_NAME = "broker.home"
HOSTS = 'printf "{broker} {name}\\n" > "$1/hosts" && mount --bind "$1/hosts" /etc/hosts || exit 10\n'


@pytest.mark.parametrize("configured", [BROKER, BY_NAME])
def test_a_skill_reaching_outside_is_refused_and_recorded_the_configured_broker_works(tmp_path, configured):
    unshare = namespace_command()
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    if unshare != ["unshare", "-n"]:
        pytest.skip("adding an address to loopback needs root's `unshare -n`")
    script = SCRIPT.format(broker=BROKER, mosquitto=MOSQUITTO, configured=configured)
    if configured == BY_NAME:
        script = HOSTS.format(broker=BROKER, name=BY_NAME) + script
    done = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script, "sh", str(tmp_path), sys.executable,
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
    assert network["allowed_hosts"] == [configured]  # the name, whose address the guard looked up itself
    assert network["reached"] == sorted({f"{BROKER}:18830", f"{configured}:18830"})
    assert report["offline"] is False  # it did reach a machine beyond loopback: the configured broker


DAEMON_CONFIG = """
skills:
  paths: [{skills}]
home:
  mqtt: {{host: {broker}, port: 18830}}
  devices:
    - name: kitchen light
      room: kitchen
      kind: light
      mqtt: {{command_topic: home/kitchen/light/set, state_topic: home/kitchen/light}}
"""

# $1: a folder, $2: python, $3: agentd.py, $4: home, $5: config, $6: model
DAEMON_SCRIPT = SCRIPT.split('"$2" "$3" {configured} 18830')[0] + """
"$2" -c 'import sys, paho.mqtt.subscribe as s; m = s.simple("home/kitchen/light/set", hostname="{broker}", port=18830); open(sys.argv[1], "wb").write(m.payload)' "$1/heard" &
"$2" "$3" skills trust weather_online --home "$4" --config "$5" >/dev/null || exit 7
"$2" "$3" start --home "$4" --config "$5" --model "$6" || exit 1
"$2" "$3" ask --home "$4" "what is the weather online"
"$2" "$3" ask --home "$4" "turn on the kitchen light"
"$2" "$3" status --home "$4"
"$2" "$3" stop --home "$4"
sleep 0.5
echo "heard: $(cat "$1/heard")"
"""


def test_a_real_daemon_refuses_a_skill_going_outside_reports_it_in_status_and_uses_the_broker(tmp_path):
    from daemon_proc import AGENTD, short_home
    from agent.testkit.agent_model import trained_tool_model

    unshare = namespace_command()
    if MOSQUITTO is None or unshare != ["unshare", "-n"]:
        pytest.skip("needs mosquitto and root's `unshare -n`")
    model = trained_tool_model()
    home = short_home()
    config = tmp_path / "config.yaml"
    config.write_text(DAEMON_CONFIG.format(skills=REPO / "tests" / "fixtures" / "skills", broker=BROKER))
    try:
        done = subprocess.run([*unshare, "sh", "-c", DAEMON_SCRIPT.format(broker=BROKER, mosquitto=MOSQUITTO), "sh",
                               str(tmp_path), sys.executable, str(AGENTD), str(home), str(config), str(model)],
                              capture_output=True, text=True, timeout=180, cwd=REPO, env=child_env())
        log = (home / "logs" / "agentd.log").read_text() if (home / "logs" / "agentd.log").exists() else ""
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr + log
    out = done.stdout
    assert "agentd is offline: a connection to '203.0.113.7:80' was refused" in out + done.stderr
    assert "heard: ON" in out  # the configured broker carried the command
    lines = dict(line.split(None, 1) for line in out.splitlines() if line[:1].isalpha() and " " in line)
    network = json.loads(lines["network"])
    assert network["refused"] == 1
    assert [a["to"] for a in network["last"] if a["outcome"] == "refused"] == ["203.0.113.7:80"]
    assert f"{BROKER}:18830" in network["reached"] and lines["offline"] == "False"
    assert "Traceback" not in done.stderr + log


def test_mcp_servers_and_a_remote_engine_the_config_names_are_allowed():
    from agent.daemon.netguard import configured_hosts
    from agent.config.settings import load_settings

    settings = load_settings(overrides={
        "home": {"mqtt": {"host": "Broker.lan"}},
        "mcp_servers": {"notes": {"url": "http://notes.lan:8000/mcp"}, "off": {"url": "http://off.lan/mcp", "enabled": False},
                        "local": {"command": "mcp-server-time"}},
        "model": {"backend": "openai", "remote": {"base_url": "http://studio.lan:8080/v1"}}})
    assert configured_hosts(settings) == {"broker.lan", "notes.lan", "studio.lan"}
