"""A real MQTT broker for tests: Debian's `mosquitto` on 127.0.0.1, on a free port.

`broker` (a pytest fixture) starts one per test with a config in the test's temp folder and
stops it afterwards; tests that need it are skipped, with the reason, only when the
`mosquitto` binary is not installed (`apt-get install mosquitto`; CI installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

# Debian installs the broker in /usr/sbin, which is not on every user's PATH.
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
MOSQUITTO = shutil.which("mosquitto", path=_SEARCH)
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto process; `restart()` brings it back on the same port."""

    def __init__(self, folder: Path, port: int | None = None, users: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.config = self.folder / "mosquitto.conf"
        self.log = self.folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        access = "allow_anonymous true\n"
        if users:  # only these users may connect
            passwords = self.folder / "passwords"
            passwords.write_text("".join(f"{name}:{secret}\n" for name, secret in users.items()))
            subprocess.run([shutil.which("mosquitto_passwd", path=_SEARCH), "-U", str(passwords)], check=True)
            access = f"allow_anonymous false\npassword_file {passwords}\n"
        if os.geteuid() == 0:  # else it drops to the `mosquitto` user, who cannot read this folder
            access += "user root\n"
        # No persistence: a restarted broker has forgotten its retained messages, as after
        # a crash, so a test sees what a client must do to recover.
        self.config.write_text(
            f"listener {self.port} {HOST}\n{access}persistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
            encoding="utf-8",
        )

    def start(self, timeout_s: float = 10.0) -> "Broker":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on {HOST}:{self.port}: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return text[-2000:] or "(no log)"


@pytest.fixture
def broker(tmp_path):
    """A running mosquitto on a free 127.0.0.1 port, stopped after the test."""
    if MOSQUITTO is None:
        pytest.skip("the mosquitto broker is not installed (apt-get install mosquitto)")
    running = Broker(tmp_path).start()
    yield running
    running.stop()
