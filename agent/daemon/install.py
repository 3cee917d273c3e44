"""`agentd service install|uninstall`: a launchd agent (macOS) or a systemd user unit (Linux).

Either one starts `agentd run` at login and restarts it if it crashes.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

LABEL = "local.agentd"
UNIT = "agentd.service"


def unit_path() -> Path:
    """Where the service definition lives for this platform."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    return Path.home() / ".config" / "systemd" / "user" / UNIT


def launchd_plist(command: list[str], home: Path) -> str:
    args = "\n".join(f"    <string>{escape(part)}</string>" for part in command)
    log = escape(str(home / "logs" / "service.log"))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{args}
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>
  <key>StandardErrorPath</key><string>{log}</string>
</dict>
</plist>
"""


def systemd_unit(command: list[str], home: Path) -> str:
    return f"""[Unit]
Description=agentd, an offline home agent
After=default.target

[Service]
ExecStart={shlex.join(command)}
Restart=on-failure
RestartSec=5
Environment=AGENTD_HOME={home}

[Install]
WantedBy=default.target
"""


def install(command: list[str], home: Path, *, load: bool = True) -> str:
    """Write the service definition (atomically) and load it; a line saying what was done."""
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = launchd_plist(command, home) if sys.platform == "darwin" else systemd_unit(command, home)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    if load:
        _run(["launchctl", "load", "-w", str(path)] if sys.platform == "darwin" else ["systemctl", "--user", "daemon-reload"])
        if sys.platform != "darwin":
            _run(["systemctl", "--user", "enable", "--now", UNIT])
    return f"installed {path}"


def uninstall(*, load: bool = True) -> str:
    path = unit_path()
    if not path.exists():
        return "no agentd service was installed"
    if load:
        _run(["launchctl", "unload", "-w", str(path)] if sys.platform == "darwin" else ["systemctl", "--user", "disable", "--now", UNIT])
    path.unlink()
    return f"removed {path}"


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        print(f"note: {command[0]} is not available; the file is written but not loaded", file=sys.stderr)
    except subprocess.CalledProcessError as exc:
        print(f"note: {' '.join(command)} failed: {exc.stderr.strip()}", file=sys.stderr)
