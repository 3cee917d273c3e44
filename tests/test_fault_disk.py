"""A full disk: the home folder on a tiny tmpfs (inside `unshare -m`) that fills up while
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


def needs_mount_namespace() -> None:
    """Skip unless this user may make a private mount namespace (root, `unshare -m`)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("a private mount namespace needs root (unshare -m)")


def probe_on_a_tiny_disk(tmp_path, probe: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run tests/PROBE with its home on a fresh 1 MB tmpfs; what it printed, and its JSON report."""
    needs_mount_namespace()
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", SCRIPT, "sh", str(home), sys.executable,
                           str(REPO / "tests" / probe)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr
    return done, json.loads(done.stdout.splitlines()[-1])


def test_turns_answer_on_a_full_disk_it_is_said_once_and_all_is_well_after(tmp_path):
    done, report = probe_on_a_tiny_disk(tmp_path, "disk_full_probe.py")

    assert report["filled"] > 0
    assert report["replies"] == [f"done: Reply {n}." for n in range(1, 6)]  # every turn answered
    [problem] = report["problems_while_full"]
    assert problem.startswith("agentd.db cannot be written (the disk is full or failing)")
    assert done.stderr.count("agentd.db cannot be written") == 1  # once, not once per turn
    assert report["problems_after"] == []  # freed: it writes again, no restart
    assert "agentd.db is being written again" in done.stderr
    assert report["tool_results"] == ["Error: not saved: agentd.db cannot be written: database or disk is full"]
    assert report["integrity"] == "ok"  # nothing half-written
    # the turns while full were not saved; the ones before and after were, whole
    assert report["saved"] == ["Question 1", "Reply 1.", "Question 5", "Reply 5."]


# Runs inside `unshare -m`. $1..$5: python, agentd.py, home, config, model.
DAEMON_SCRIPT = """
mount -t tmpfs -o size=4m,mode=0700 tmpfs "$3" || exit 9
ask() { "$1" "$2" ask --home "$3" --config "$4" --model "$5" "What is 12 times 7?"; }
"$1" "$2" ask --start --home "$3" --config "$4" --model "$5" "What is 12 times 7?" || exit 1
dd if=/dev/zero of="$3/filler" bs=4k 2>/dev/null
echo "== full"
ask "$@" && ask "$@" && ask "$@" || exit 2
"$1" "$2" status --home "$3" | grep '^problems'
rm "$3/filler"
echo "== freed"
ask "$@" || exit 3
"$1" "$2" status --home "$3" | grep '^problems'
"$1" "$2" stop --home "$3"
cat "$3/logs/agentd.log" > "$3.log" 2>/dev/null
"""


def test_a_real_daemon_on_a_full_disk_keeps_answering_and_recovers_without_a_restart(tmp_path):
    from daemon_proc import AGENTD, greedy_config, short_home
    from agent.testkit.agent_model import trained_tool_model

    needs_mount_namespace()
    model = trained_tool_model()
    folder = short_home()
    home = folder / "home"
    home.mkdir()
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", DAEMON_SCRIPT, "sh", sys.executable, str(AGENTD), str(home),
                               str(greedy_config(folder)), str(model)],
                              capture_output=True, text=True, timeout=300, cwd=REPO, env=child_env())
        log = (folder / "home.log").read_text() if (folder / "home.log").exists() else ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr + log
    full, freed = done.stdout.split("== full")[1].split("== freed")
    assert full.count("12 times 7 is 84.") == 3  # every turn answered on the full disk
    [problems] = [line for line in full.splitlines() if line.startswith("problems")]
    assert problems.count("cannot be written") == 1
    assert freed.count("12 times 7 is 84.") == 1
    assert [line for line in freed.splitlines() if line.startswith("problems")] == ["problems       []"]
    assert "Traceback" not in done.stderr + log, done.stderr + log


def test_a_reminder_due_on_a_full_disk_waits_for_space_and_runs_once(tmp_path):
    _, report = probe_on_a_tiny_disk(tmp_path, "schedule_full_probe.py")
    assert report["heard_while_full"] == []  # held: running it could not have been recorded
    assert report["add_while_full"].startswith("not scheduled: the disk holding ") and "is full" in report["add_while_full"]
    [problem] = report["problems_while_full"]
    assert problem.startswith("the disk holding") and "scheduled jobs and reminders wait" in problem
    assert report["heard"] == ["Reminder: water the plants"]  # once, as soon as there was space
    assert report["ran_after_s"] <= 6 and report["problems_after"] == [] and report["jobs"] == []
