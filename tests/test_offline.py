"""agentd needs no network: a daemon and a chat turn inside a network namespace with only loopback.

`unshare -n` (root) or `unshare -rn` (an unprivileged user namespace) gives the commands a
namespace whose only interface is `lo`; the test is skipped only where neither is permitted.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from agent.daemon.process import running_pid
from daemon_proc import AGENTD, REPO, child_env, greedy_config, short_home
from agent.testkit.agent_model import trained_tool_model

pytestmark = pytest.mark.slow

# Runs inside the namespace. $1..$5: python, agentd.py, home, config, model.
SCRIPT = """
ip link set lo up 2>/dev/null
"$1" -c 'import socket; print("interfaces:", " ".join(name for _, name in socket.if_nameindex()))'
"$1" "$2" ask --start --home "$3" --config "$4" --model "$5" "What is 12 times 7?" || exit 1
"$1" "$2" status --home "$3" || exit 1
"$1" "$2" stop --home "$3"
"""


def namespace_command() -> list[str]:
    """The unshare command that gives a private network namespace here; skip if none is allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    for command in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*command, "true"], capture_output=True).returncode == 0:
            return command
    pytest.skip("creating a network namespace is not permitted here (unshare -n and unshare -rn both failed)")


def test_a_turn_with_no_network_at_all():
    unshare = namespace_command()
    model = trained_tool_model()  # built (or found in the cache) outside the namespace
    home = short_home()
    try:
        done = subprocess.run(
            [*unshare, "sh", "-c", SCRIPT, "sh", sys.executable, str(AGENTD), str(home),
             str(greedy_config(home)), str(model)],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env(),
        )
        log = (home / "logs" / "agentd.log").read_text() if (home / "logs" / "agentd.log").exists() else ""
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log}"
    finally:
        pid = running_pid(home)
        if pid and pid > 0:  # a failed run must not leave a daemon behind
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
    lines = done.stdout.splitlines()
    assert lines[0] == "interfaces: lo"  # the namespace really had nothing but loopback
    assert "12 times 7 is 84." in lines
    status = dict(line.split(None, 1) for line in lines if line.split(None, 1)[0] in ("model", "offline"))
    assert status == {"model": model.name, "offline": "True"}  # measured: nothing left the machine
    network = json.loads(next(line for line in lines if line.startswith("network")).split(None, 1)[1])
    assert network["watching"] and network["attempts"] == 0 and network["last"] == []
    assert any(line.startswith("agentd (pid") and line.endswith("stopped") for line in lines)
