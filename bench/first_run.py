"""The first run as a person meets it: `agentd start` on a fresh home -> the first reply, then
a restart -> ready again. Goals on the 2-core build machine (demo model, MLX on the CPU): first
reply <= 90 s from start, with progress shown the whole time; a restart ready (prefix warm) <= 5 s.

It runs the real CLI in subprocesses on a new home folder (the demo model converted there, as on a
first run), asking what a person asks first. Printed figures, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import show

AGENTD = Path(__file__).resolve().parents[1] / "agentd.py"
QUESTION = "what time is it?"


def agentd(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(AGENTD), *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=timeout)


def status(home: Path) -> dict:
    """The daemon's status report, asked in-process (a CLI call would add its own start-up)."""
    from agent.ipc import status_sync

    return status_sync(home / "agentd.sock")


def wait_ready(home: Path, started: float, seen: list[str]) -> float:
    """Poll the status until the warm-up is over; seconds since `started`. Keeps what it said."""
    while True:
        warm = status(home).get("warm_up") or {}
        if warm.get("text") and (not seen or seen[-1] != warm["text"]):
            seen.append(warm["text"])
        if warm.get("phase") in ("ready", "stopped"):
            return time.monotonic() - started
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", help="home folder to use (default: a new temporary one, i.e. a first run)")
    parser.add_argument("--model", help="a model folder instead of the demo model")
    args = parser.parse_args(argv)
    home = Path(args.home or tempfile.mkdtemp(prefix="agentd-first-run-"))
    extra = ["--model", args.model] if args.model else []
    result: dict = {}
    try:
        started = time.monotonic()
        done = agentd(home, "start", *extra)
        if done.returncode:
            raise SystemExit(f"agentd start failed: {done.stderr.strip()}")
        result["start_answers_s"] = round(time.monotonic() - started, 1)  # loaded (and converted) the model
        asked = time.monotonic()
        reply = agentd(home, "ask", QUESTION, "--json")
        events = [json.loads(line) for line in reply.stdout.splitlines() if line.startswith("{")]
        result["first_reply_s"] = round(time.monotonic() - started, 1)
        result["first_reply_goal"] = "<= 90 s"
        result["ask_waited_s"] = round(time.monotonic() - asked, 1)
        result["progress_notes"] = sum(e.get("type") == "Note" and "warming up" in e.get("text", "").lower() for e in events)
        done_event = next((e for e in events if e.get("type") == "ReplyDone"), {})
        result["first_reply"] = done_event.get("text", "")[:80]
        result["stopped_by"] = done_event.get("stopped_by")
        report = status(home)
        result["prefix_tokens"] = report["warm_up"]["total_tokens"]
        result["model"] = report["model"]

        agentd(home, "stop")
        restarted = time.monotonic()
        agentd(home, "start", *extra)
        seen: list[str] = []
        result["restart_ready_s"] = round(wait_ready(home, restarted, seen), 1)
        result["restart_ready_goal"] = "<= 5 s"
        result["restart_cpu_s"] = cpu_seconds(status(home)["pid"])  # what it cost, whatever else runs
        result["restart_warm_up"] = seen[-1] if seen else None
        result["load_average"] = round(os.getloadavg()[0], 1)  # other work on this machine inflates the times
    finally:
        agentd(home, "stop")
    return show(result)


if __name__ == "__main__":
    main()
