"""`agentd doctor`: check the set-up and say what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: a warning, not a failure
    detail: str
    fix: str = ""


def run_checks(home_arg: str | None, config_arg: str | None, model_arg: str | None, *, out=print) -> int:
    """Run every check, print one line each; exit code 1 if any failed."""
    state: dict = {}
    checks: list[Callable[[dict], Check]] = [
        lambda s: check_python(),
        lambda s: check_home(s, home_arg),
        lambda s: check_config(s, config_arg, model_arg),
        check_mlx,
        check_model,
        check_daemon,
        check_state_files,
        lambda s: check_audio(),
        check_speech,
        check_mcp,
        check_hass,
        check_cameras,
    ]
    failed = 0
    for check in checks:
        try:
            result = check(state)
        except Exception as exc:  # a check must never stop the others
            result = Check(getattr(check, "__name__", "check"), False, f"{type(exc).__name__}: {exc}")
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[result.ok]
        out(f"[{mark}] {result.name}: {result.detail}")
        if result.fix and result.ok is not True:
            out(f"       fix: {result.fix}")
        failed += result.ok is False
    return 1 if failed else 0


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    detail = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    return Check("python", ok, detail, "" if ok else "agentd needs Python 3.11 or newer")


def check_home(state: dict, home_arg: str | None) -> Check:
    from agent.config.paths import resolve_home

    home = resolve_home(home_arg)
    probe = home / ".doctor-probe"
    probe.write_text("ok")
    probe.unlink()
    state["home"] = home
    return Check("home", True, f"{home} (writable, mode {oct(home.stat().st_mode & 0o777)})")


def check_config(state: dict, config_arg: str | None, model_arg: str | None) -> Check:
    from agent.config.paths import select_user_config
    from agent.config.settings import ConfigError, load_settings

    if "home" not in state:
        return Check("config", False, "skipped: no home folder")
    path = select_user_config(state["home"], config_arg)
    try:
        state["settings"] = load_settings(path, overrides={"model.path": model_arg})
    except ConfigError as exc:
        return Check("config", False, str(exc), "correct the key named above (see config/default.yaml)")
    return Check("config", True, f"{path or 'defaults only'}")


def check_mlx(state: dict) -> Check:
    import mlx.core as mx

    device = mx.default_device()
    on_apple = sys.platform == "darwin" and platform.machine() == "arm64"
    detail = f"MLX {mx.__version__} on {device}"
    if on_apple:
        return Check("mlx", True, detail)
    return Check("mlx", None, detail + " (not Apple Silicon: the CPU backend works but is slow)")


def check_model(state: dict) -> Check:
    from agent.config.paths import models_dir
    from agent.llm.catalog import ModelNotFoundError, find_model

    settings = state.get("settings")
    if settings is None:
        return Check("model", False, "skipped: the config did not load")
    try:
        choice = find_model(settings.model.path, models_dir(state["home"]), settings.model.preset)
    except ModelNotFoundError as exc:
        return Check("model", False, str(exc))
    config = Path(choice.path) / "config.json"
    if not config.is_file():
        return Check("model", False, f"{choice.path} has no config.json", "pull it again with `agentd model pull`")
    if choice.is_demo:
        return Check("model", None, f"{choice.path.name}: {choice.reason}", "`agentd model pull qwen3.5-4b`")
    return Check("model", True, f"{choice.path}; {pictures(Path(choice.path))}")


def pictures(path: Path) -> str:
    """Whether the model in `path` can look at pictures here, and if not, why."""
    from agent.llm.vision import has_vision_tower, vision_extra_missing

    if not has_vision_tower(path):
        return "sees no pictures (no vision weights)"
    missing = vision_extra_missing()
    return f"sees no pictures: {missing}" if missing else "sees pictures"


def check_daemon(state: dict) -> Check:
    from agent.config.paths import socket_path
    from agent.daemon.process import running_pid

    if "home" not in state:
        return Check("daemon", None, "skipped: no home folder")
    pid = running_pid(state["home"])
    if pid is None:
        return Check("daemon", None, "not running", "`agentd start` (or `agentd run` in the foreground)")
    problems = daemon_problems(socket_path(state["home"]))
    if problems:
        return Check("daemon", None, f"running (pid {pid}) with problems: " + " | ".join(problems),
                     "see each problem's own advice; `agentd status` lists them too")
    return Check("daemon", True, f"running (pid {pid}), socket {socket_path(state['home'])}")


def daemon_problems(socket: Path) -> list[str]:
    """What the running daemon says is wrong (a config it refused, a service that gave up, ...)."""
    from agent.ipc import status_sync

    try:
        return list(status_sync(socket, timeout=5).get("problems") or [])
    except (ConnectionError, TimeoutError) as exc:
        return [f"it does not answer on its socket ({exc})"]


def check_state_files(state: dict) -> Check:
    """agentd.db and jobs.db pass SQLite's check; damaged files set aside earlier are listed."""
    from agent.salvage import damage, damaged_copies

    if "home" not in state:
        return Check("state files", None, "skipped: no home folder")
    home = state["home"]
    damaged = [f"{name}: {why}" for name in ("agentd.db", "jobs.db") if (why := damage(home / name))]
    if damaged:
        return Check("state files", False, "damaged: " + "; ".join(damaged),
                     "restart agentd: it sets a damaged file aside and salvages what it can read")
    reports = [path.read_text().strip() for path in damaged_copies(home)]
    if reports:
        return Check("state files", None, " | ".join(reports),
                     "check the fresh files; the damaged copies can then be deleted")
    return Check("state files", True, "agentd.db and jobs.db pass SQLite's check")


def check_audio() -> Check:
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library itself is missing
        return Check("audio", None, f"PortAudio not found ({exc})", "install PortAudio (Debian: apt-get install libportaudio2)")
    inputs = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
    if not inputs:
        return Check("audio", None, "no microphone found", "plug in a microphone (voice is optional)")
    return Check("audio", True, f"{len(inputs)} input device(s): {', '.join(inputs[:3])}")


def check_speech(state: dict) -> Check:
    """The speech model and the speech program voice would use (a failure only if voice is on)."""
    from agent.config.paths import models_dir
    from agent.voice.stt import ModelNotFound, resolve_model
    from agent.voice.tts import make_speaker

    settings = state.get("settings")
    if settings is None:
        return Check("speech", None, "skipped: no config")
    voice = settings.voice
    try:
        model = resolve_model(voice.stt_model, models_dir(state["home"]))
        speaker = make_speaker(voice.tts, voice=voice.tts_voice, rate=voice.tts_rate)
    except (ModelNotFound, ValueError) as exc:
        return Check("speech", False if voice.enabled else None, str(exc), "see the voice section of config/default.yaml")
    off = "" if voice.enabled else " (voice.enabled is false)"
    return Check("speech", True, f"recognition model {model}, replies spoken by {speaker.name}{off}")


def check_mcp(state: dict) -> Check:
    """Start each configured MCP server once, as the daemon would, and say how it went."""
    import asyncio

    settings = state.get("settings")
    servers = {n: c for n, c in settings.mcp_servers.items() if c.enabled} if settings else {}
    if not servers:
        return Check("mcp servers", True, "none configured")
    from agent.config.paths import log_dir
    from agent.mcp.hub import McpHub

    async def probe() -> dict:
        hub = McpHub(servers, log_dir=log_dir(state["home"]) if "home" in state else None)
        task = asyncio.create_task(hub.serve())
        await hub.wait_up(max(c.start_timeout_s for c in servers.values()) + 1)
        found = {name: (link.state, len(link.tools), link.error) for name, link in hub.links.items()}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return found

    found = asyncio.run(probe())
    lines = [f"{name} {state} ({tools} tools)" if state == "up" else f"{name} {state}: {error or 'no answer'}"
             for name, (state, tools, error) in found.items()]
    ok = all(state == "up" for state, _, _ in found.values())
    return Check("mcp servers", ok, "; ".join(lines),
                 "" if ok else "check the server's command/url in mcp_servers (its own log: HOME/logs/mcp-NAME.log)")


def check_hass(state: dict) -> Check:
    """Is the configured Home Assistant reachable, and does it take the token?"""
    settings = state.get("settings")
    hass = settings.home.hass if settings else None
    if hass is None or hass.url is None:
        return Check("home assistant", True, "not configured")
    from agent.home_control.devices import HomeControlError
    from agent.home_control.hass import probe

    try:
        return Check("home assistant", True, probe(hass))
    except HomeControlError as exc:
        return Check("home assistant", False, str(exc),
                     "check home.hass.url, that Home Assistant runs, and the token in "
                     f"${hass.token_env} or home.hass.token_file")


def check_cameras(state: dict) -> Check:
    """The configured cameras and what is visibly wrong with them (no picture is taken here:
    `agentd home cameras` does that)."""
    settings = state.get("settings")
    entries = [d for d in settings.home.devices if d.kind == "camera"] if settings else []
    if not entries:
        return Check("cameras", True, "none configured")
    from agent.home_control.cameras import setup_problem, source_of
    from agent.home_control.devices import Device

    cameras = [Device.from_settings(d) for d in entries]
    problems = {c.name: p for c in cameras if (p := setup_problem(c))}
    detail = "; ".join(f"{c.name} ({problems.get(c.name) or source_of(c)})" for c in cameras)
    return Check("cameras", None if problems else True, detail,
                 "fix the camera's snapshot file or command in home.devices; `agentd home cameras` takes a "
                 "test picture from each" if problems else "")


def cmd_doctor(args: argparse.Namespace) -> int:
    return run_checks(args.home, getattr(args, "config", None), getattr(args, "model", None))
