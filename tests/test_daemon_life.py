"""The daemon's life cycle: the home lock, shutdown, supervised services, real signals."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from agent.events import TextDelta
from agent.ipc import AlreadyRunning, Client, status_sync
from agent.daemon.process import HomeLock, StartError, running_pid, start_in_background, stop_daemon, supervise
from fakes import SERVE_FAKE, FakeAgent, home, make, run, running, spawn, until  # noqa: F401  (home is a fixture)


# -- life cycle ------------------------------------------------------------------------------


def test_a_second_daemon_on_the_same_home_is_refused(home):
    async def go():
        async with running(make(home)):
            with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)"):
                await make(home).serve()
            assert running_pid(home) == os.getpid()

    run(go())
    assert running_pid(home) is None


def test_stop_cancels_the_running_turn_closes_and_removes_the_socket(home):
    closed = []

    async def go():
        daemon = make(home, on_close=lambda: closed.append(True))
        task = asyncio.create_task(daemon.serve())
        await until(lambda: daemon.server._server is not None)
        async with await Client.connect(daemon.socket_path) as client:
            events = []
            async for event in client.reply("slow 1000"):
                events.append(event)
                if len(events) == 3:
                    daemon.stop()
        await task
        return events, daemon

    events, daemon = run(go())
    assert events[-1].stopped_by == "cancelled"
    assert closed == [True]
    assert not daemon.socket_path.exists()


def test_an_abandoned_in_process_turn_is_cancelled(home):
    agent = FakeAgent()

    async def go():
        async with running(make(home, agent)) as daemon:
            events = daemon.submit("slow 1000", who="voice")
            assert isinstance(await anext(events), TextDelta)
            await events.aclose()
            await until(lambda: daemon.turns.current is None)

    run(go())
    assert agent.active == 0


def test_a_failing_service_is_restarted_with_backoff(caplog):
    starts = []

    async def flaky():
        starts.append(time.monotonic())
        if len(starts) < 4:
            raise OSError("device busy")

    run(supervise("flaky", flaky, first_delay=0.02, max_delay=0.05))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 4
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.05
    assert caplog.text.count("service flaky failed") == 3


def test_the_home_lock_names_its_holder(home):
    with HomeLock(home):
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            HomeLock(home).acquire()
        assert running_pid(home) == os.getpid()
    assert running_pid(home) is None


# -- a real process and real signals ---------------------------------------------------------


def test_sigterm_stops_cleanly_even_mid_reply(home):
    proc, status = spawn(home)
    assert status["pid"] == proc.pid and status["model"] == "fake-model"

    async def reply_then_term():
        async with await Client.connect(home / "agentd.sock") as client:
            events = []
            async for event in client.reply("slow 1000"):
                events.append(event)
                if len(events) == 3:
                    proc.send_signal(signal.SIGTERM)
            return events

    events = run(reply_then_term())
    assert proc.wait(10) == 0
    assert events[-1].stopped_by == "cancelled"
    assert not (home / "agentd.sock").exists()
    assert running_pid(home) is None
    assert "agentd stopped" in (home / "logs" / "agentd.log").read_text()


def test_sighup_reloads_and_stop_daemon_stops(home):
    proc, _ = spawn(home)
    try:
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not (home / "reloads").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (home / "reloads").read_text() == "1"
        assert status_sync(home / "agentd.sock")["pid"] == proc.pid
        assert stop_daemon(home) == proc.pid
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_after_kill_9_the_stale_socket_is_replaced(home):
    proc, _ = spawn(home)
    proc.kill()
    proc.wait(10)
    assert (home / "agentd.sock").exists()  # left behind
    assert running_pid(home) is None  # but the lock died with the process
    again, status = spawn(home)
    try:
        assert status["pid"] == again.pid != proc.pid
        assert "stale socket" in (home / "stderr.txt").read_text()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(10) == 0


def test_a_second_daemon_process_is_refused_with_the_pid(home):
    proc, _ = spawn(home)
    try:
        second = subprocess.run([sys.executable, str(SERVE_FAKE), str(home)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert f"already running (pid {proc.pid})" in second.stderr
        assert status_sync(home / "agentd.sock")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_start_in_background_waits_until_it_answers(home):
    pid = start_in_background([sys.executable, str(SERVE_FAKE), str(home)], home, home / "agentd.sock")
    assert running_pid(home) == pid
    assert stop_daemon(home) == pid
    assert running_pid(home) is None and stop_daemon(home) is None


def test_start_in_background_reports_a_daemon_that_dies(home):
    with pytest.raises(StartError, match="exit code 3, no output"):
        start_in_background([sys.executable, "-c", "raise SystemExit(3)"], home, home / "agentd.sock")


def test_a_daemon_that_dies_while_starting_is_reported_by_its_own_reason(home):
    # What `agentd run` prints for a user-facing error, after some logging noise.
    script = "import sys; print('INFO loading', file=sys.stderr); print('agentd: the demo model was not found: install it', file=sys.stderr); sys.exit(2)"
    with pytest.raises(StartError) as caught:
        start_in_background([sys.executable, "-c", script], home, home / "agentd.sock")
    assert str(caught.value) == "agentd exited while starting: the demo model was not found: install it"


def test_a_crash_while_starting_names_its_last_line_and_where_the_rest_is(home):
    with pytest.raises(StartError, match=r"ZeroDivisionError: division by zero \(exit code 1; the whole output is in .*start.err\)"):
        start_in_background([sys.executable, "-c", "1/0"], home, home / "agentd.sock")


def test_stop_kills_a_daemon_that_cannot_reach_a_stop_point(home):
    # A model step on a slow CPU: SIGTERM is heard only when the step ends. Stop must still
    # end with no daemon, so that the next start starts one.
    script = ("import signal, sys, time; from agent.daemon.process import HomeLock; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); lock = HomeLock(sys.argv[1]); lock.acquire(); "
              "print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"
        started = time.monotonic()
        assert stop_daemon(home, timeout=0.5, kill_after=10) == proc.pid
        assert time.monotonic() - started < 10
        assert running_pid(home) is None
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
