"""Before its socket answers, a starting daemon says what it is doing (loading the model, or
converting the demo model on a first run) through a file in the home; a dead one says nothing."""

import json
import os
import subprocess
import sys

import agent.daemon.startup as startup
from agent.config.paths import models_dir
from agent.llm.demo_model import BFLOAT16, demo_folder


def test_a_starting_daemon_says_it_loads_then_that_it_converts(tmp_path):
    startup.announce(tmp_path)
    assert startup.starting(tmp_path).startswith(f"agentd is starting (pid {os.getpid()}): loading the model, ")
    # ensure_demo_model converts into a temp folder named with its pid, then renames it
    (models_dir(tmp_path) / f".{demo_folder(BFLOAT16)}.tmp-{os.getpid()}-abc").mkdir(parents=True)
    assert ": converting the demo model to MLX (once), " in startup.starting(tmp_path)
    startup.done(tmp_path)
    assert startup.starting(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["models"]  # no temp file left


def test_a_daemon_that_died_while_starting_is_not_reported_as_starting(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / startup.FILE).write_text(json.dumps({"pid": int(gone.stdout), "since": 0}))
    assert startup.starting(tmp_path) is None
    (tmp_path / startup.FILE).write_text("{half a file")
    assert startup.starting(tmp_path) is None
