"""Builds the real Home Assistant the tests start: a venv of its own under `.cache/`.

`python tests/hass_setup.py` (what `.ci/run` calls) and the test fixture both call
`ensure_hass()`; a stamp file makes the second call instant, so the build happens once per
cache. Its own venv because Home Assistant pins dozens of packages that clash with agentd's.

The recipe, measured on Python 3.11 (see the Home Assistant issue):
- `homeassistant==2024.3.3` is the last release for Python 3.11. Its dependencies must be
  installed under its own `package_constraints.txt` plus `josepy<2`: a plain install picks
  josepy 2.x, which breaks `acme` (through `hass_nabucasa`) and every HTTP request is a 500.
- At its first start Home Assistant pip-installs the requirements of the integrations it
  loads. Those are read here from the integrations' manifests and installed up front, and
  the tests start it with `--skip-pip`, so a test run never installs (or downloads) anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VERSION = "2024.3.3"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / f"homeassistant-{VERSION}"
STAMP = VENV / ".installed"

# What the tests' configuration names (tests/hass_server.py), plus the integrations
# Home Assistant sets up without being asked (bootstrap.py's CORE, LOGGING and
# DEFAULT_INTEGRATIONS in 2024.3), plus the platforms the `demo` integration loads.
CONFIGURED = ["http", "api", "websocket_api", "config", "onboarding", "auth", "template",
              "input_boolean", "demo"]
ALWAYS_LOADED = ["homeassistant", "persistent_notification", "logger", "system_log",
                 "application_credentials", "backup", "frontend", "hardware", "network",
                 "system_health", "automation", "person", "scene", "script", "tag", "zone",
                 "counter", "input_button", "input_datetime", "input_number", "input_select",
                 "input_text", "schedule", "timer"]
DEMO_PLATFORMS = ["air_quality", "alarm_control_panel", "binary_sensor", "button", "camera",
                  "calendar", "climate", "cover", "date", "datetime", "event", "fan",
                  "humidifier", "light", "lock", "media_player", "number", "select", "sensor",
                  "siren", "stt", "switch", "text", "time", "update", "vacuum", "water_heater",
                  "weather", "tts", "mailbox", "notify", "image_processing", "device_tracker"]
# Not in any manifest: the auth module for one-time passwords imports it at start.
EXTRA = ["pyotp==2.8.0"]


def python() -> Path:
    """The venv's interpreter (it may not exist yet)."""
    return VENV / "bin" / "python"


def is_built() -> bool:
    return STAMP.exists() and python().exists()


def _pip(*args: str) -> None:
    subprocess.run([str(python()), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *args], check=True)


def _package_folder() -> Path:
    out = subprocess.run([str(python()), "-c", "import importlib.util as u; "
                          "print(u.find_spec('homeassistant').submodule_search_locations[0])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def first_start_requirements(components: Path) -> list[str]:
    """Every requirement of the loaded integrations and of what they depend on."""
    seen: set[str] = set()
    todo = [*CONFIGURED, *ALWAYS_LOADED, *DEMO_PLATFORMS]
    requirements: list[str] = []
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = json.loads((components / domain / "manifest.json").read_text(encoding="utf-8"))
        requirements += [r for r in manifest.get("requirements", []) if r not in requirements]
        todo += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
    return sorted(requirements)


def ensure_hass(log=print) -> Path:
    """Build the venv unless the stamp says it is there; returns its Python."""
    if is_built():
        return python()
    # `.cache` may be shared by several checkouts: one builds, the others wait for it.
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".homeassistant-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return python() if is_built() else _build(log)


def _build(log) -> Path:
    started = time.monotonic()
    log(f"building Home Assistant {VERSION} in {VENV} (once; a few minutes)")
    VENV.mkdir(parents=True, exist_ok=True)
    # The base interpreter, even when this runs inside agentd's own venv.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    # First the package alone, to read its pins and its integrations' manifests ...
    _pip("--no-deps", f"homeassistant=={VERSION}")
    package = _package_folder()
    constraints = package / "package_constraints.txt"
    # ... then everything under those pins in one resolution.
    _pip("-c", str(constraints), f"homeassistant=={VERSION}", "josepy<2", *EXTRA,
         *first_start_requirements(package / "components"))
    STAMP.write_text(json.dumps({"version": VERSION,
                                 "seconds": round(time.monotonic() - started, 1)}) + "\n")
    log(f"Home Assistant {VERSION} built in {time.monotonic() - started:.0f} s")
    return python()


if __name__ == "__main__":
    os.chdir(ROOT)
    print(ensure_hass())
