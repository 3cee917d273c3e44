"""A full disk: the home folder on a 1 MB tmpfs (inside `unshare -m`) that fills up while
turns run. Turns still answer, the store's failed writes are reported once, nothing is left
half-written, and it all works again once space is freed, with no restart."""

import json
import shutil
import subprocess
import sys

import pytest

from daemon_proc import REPO, child_env

pytestmark = pytest.mark.slow

SCRIPT = 'mount -t tmpfs -o size=1m,mode=0700 tmpfs "$1" || exit 9\n"$2" "$3" "$1"'


def test_turns_answer_on_a_full_disk_it_is_said_once_and_all_is_well_after(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("a private mount namespace needs root (unshare -m)")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", SCRIPT, "sh", str(home), sys.executable,
                           str(REPO / "tests" / "disk_full_probe.py")],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    report = json.loads(done.stdout.splitlines()[-1])

    assert report["filled"] > 0
    assert report["replies"] == [f"done: Reply {n}." for n in range(1, 6)]  # every turn answered
    [problem] = report["problems_while_full"]
    assert problem.startswith("agentd.db cannot be written (the disk is full or failing)")
    assert done.stderr.count("agentd.db cannot be written") == 1  # once, not once per turn
    assert report["problems_after"] == []  # freed: it writes again, no restart
    assert "agentd.db is being written again" in done.stderr
    assert report["integrity"] == "ok"  # nothing half-written
    # the turns while full were not saved; the ones before and after were, whole
    assert report["saved"] == ["Question 1", "Reply 1.", "Question 5", "Reply 5."]
