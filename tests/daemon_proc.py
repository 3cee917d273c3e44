"""Real `agentd` processes for tests: a short home, a greedy config, the CLI, a daemon to start and stop.

The trained test model (agent/testkit/agent_model.py) reproduces its scripted replies only for the
prompt it was trained on, decoding greedily, so every daemon here runs with a config that
turns sampling, skills and phrase shortcuts off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.ipc import status_sync
from agent.daemon.process import running_pid
from agent.testkit.agent_model import GREEDY_CONFIG

REPO = Path(__file__).resolve().parents[1]
AGENTD = REPO / "agentd.py"


def short_home(prefix: str = "ad-") -> Path:
    """A new private folder with a short path: AF_UNIX socket paths must stay under ~104 bytes."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if len(str(path)) > 60:  # a long $TMPDIR; /tmp is short on every Unix
        shutil.rmtree(path)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o700)
    return path


def greedy_config(folder: Path) -> Path:
    """A config file that makes the trained test model answer deterministically."""
    path = folder / "greedy.yaml"
    path.write_text(GREEDY_CONFIG)
    return path


def child_env() -> dict:
    """The environment for agentd children: this one, with the repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def agentd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python agentd.py ARGS...` and capture what it prints."""
    return subprocess.run([sys.executable, str(AGENTD), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=child_env())


class RealDaemon:
    """An `agentd run` process on one home, with a model and a config, that a test can restart."""

    def __init__(self, home: Path, config: Path, model: Path):
        self.home, self.config, self.model = home, config, model
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    @property
    def socket(self) -> Path:
        return self.home / "agentd.sock"

    @property
    def options(self) -> list[str]:
        """The --home/--config/--model options every command for this daemon takes."""
        return ["--home", str(self.home), "--config", str(self.config), "--model", str(self.model)]

    def start(self, timeout: float = 60) -> dict:
        """`agentd run` in a child process; its status once it answers on the socket."""
        with open(self.home / "stderr.txt", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([sys.executable, str(AGENTD), "run", *self.options],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO, env=child_env())
        return self.wait_until_up(timeout)

    def wait_until_up(self, timeout: float = 60) -> dict:
        """Poll the socket until a daemon answers; its status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = status_sync(self.socket, timeout=2)
                self.pid = status["pid"]
                return status
            except (ConnectionError, TimeoutError):  # not up yet, or busy (reading a 248k vocabulary holds the GIL)
                if (self.proc and self.proc.poll() is not None) or time.monotonic() > deadline:
                    raise RuntimeError(f"agentd did not come up:\n{self.output()}") from None
                time.sleep(0.05)

    def wait_until_gone(self, timeout: float = 15) -> None:
        """Wait until no process holds the home's lock (and reap our child)."""
        deadline = time.monotonic() + timeout
        while running_pid(self.home) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"agentd (pid {self.pid}) is still running")
            time.sleep(0.05)
        if self.proc is not None:
            self.proc.wait(timeout)
            self.proc = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send the daemon a signal and wait for it to die."""
        os.kill(self.pid, sig)
        self.wait_until_gone()

    def close(self) -> None:
        """Stop the daemon if it still runs (the end of a test module)."""
        if running_pid(self.home) is not None:
            self.kill(signal.SIGTERM)

    def output(self) -> str:
        """What the daemon wrote to stderr, for failure messages."""
        path = self.home / "stderr.txt"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
