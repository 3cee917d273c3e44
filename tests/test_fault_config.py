"""A typo in config.yaml while the daemon runs: `reload` refuses it, everything else still
reaches the daemon (which keeps its last good config and says so), and `stop` stops it."""

import shutil

import pytest

from daemon_proc import RealDaemon, agentd, greedy_config, short_home
from agent.testkit.agent_model import trained_tool_model

pytestmark = pytest.mark.slow

TYPO = "model.max_tokens: expected an integer, got 'lots'"


def test_a_typo_in_the_config_never_locks_the_person_out():
    model = trained_tool_model()
    home = short_home()
    config = greedy_config(home)
    daemon = RealDaemon(home, config, model)
    try:
        daemon.start()
        config.write_text(config.read_text().replace("model:\n", "model:\n  max_tokens: lots\n"))

        reload = agentd("reload", *daemon.options)
        assert reload.returncode == 2
        assert TYPO in reload.stderr and "Traceback" not in reload.stderr

        status = agentd("status", *daemon.options)
        assert status.returncode == 0, status.stderr
        problems = next(line for line in status.stdout.splitlines() if line.startswith("problems"))
        assert TYPO in problems and "last good config" in problems

        ask = agentd("ask", *daemon.options, "What is 12 times 7?")
        assert ask.returncode == 0, ask.stderr
        assert "12 times 7 is 84." in ask.stdout  # still answering, on the config it started with

        jobs = agentd("jobs", *daemon.options)
        assert jobs.returncode == 0 and TYPO in jobs.stderr  # shown, with the reason said once

        doctor = agentd("doctor", *daemon.options)
        assert TYPO in doctor.stdout

        stop = agentd("stop", *daemon.options)
        assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
        daemon.wait_until_gone()
        assert "Traceback" not in reload.stderr + status.stderr + ask.stderr + jobs.stderr + stop.stderr
    finally:
        daemon.close()
        shutil.rmtree(home, ignore_errors=True)
