"""`agentd run | start | stop | status | reload | service`: the daemon's life."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.cli.common import agentd_script, build_local_app, home_of, load_context


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon in the foreground: socket, turns, services; logs to console and file."""
    from agent.daemon.process import running_pid
    from agent.daemon.services import run_daemon

    settings, home = load_context(args)
    pid = running_pid(home)
    if pid is not None:
        print(f"agentd: already running (pid {pid}) on {home}", file=sys.stderr)
        return 1
    return run_daemon(settings, home, build=lambda health: build_local_app(args, health),
                      reload_settings=lambda: load_context(args)[0])


def cmd_start(args: argparse.Namespace) -> int:
    from agent.config.paths import socket_path
    from agent.ipc import status_sync
    from agent.daemon.process import running_pid, start_in_background
    from agent.daemon.startup import starting

    _, home = load_context(args)
    pid = running_pid(home)
    if pid is not None:
        print(f"agentd is already running (pid {pid})")
        return 0
    said = []

    def say_what_it_does() -> None:  # "converting the demo model" on a first run, then "loading the model"
        line = starting(home)
        if line and line.split(",")[0] not in said:
            said.append(line.split(",")[0])
            print(line, flush=True)

    pid = start_in_background(run_command(args, home), home, socket_path(home), waiting=say_what_it_does)
    print(f"agentd started (pid {pid}); logs in {home / 'logs'}")
    warm_up = status_sync(socket_path(home)).get("warm_up") or {}
    if warm_up.get("phase") not in (None, "ready"):  # a first run on a slow CPU: minutes
        print(f"{warm_up['text']}; `agentd status` shows how far it is")
    return 0


def run_command(args: argparse.Namespace, home: Path) -> list[str]:
    """The `agentd run` command line that `start` and the service use."""
    command = [sys.executable, str(agentd_script()), "run", "--home", str(home)]
    for flag in ("config", "model"):
        if getattr(args, flag, None):
            command += [f"--{flag}", str(Path(getattr(args, flag)).expanduser().resolve())]
    return command


def cmd_stop(args: argparse.Namespace) -> int:
    from agent.daemon.process import stop_daemon

    home = home_of(args)
    try:
        pid = stop_daemon(home)  # a model step too slow to reach a stop point is killed
    except TimeoutError as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return 1
    print(f"agentd (pid {pid}) stopped" if pid else "agentd was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.config.paths import socket_path
    from agent.ipc import DaemonNotRunning, status_sync

    home = home_of(args)
    try:
        report = status_sync(socket_path(home))
    except DaemonNotRunning as exc:
        from agent.daemon.startup import starting

        print(starting(home) or exc)  # one that is loading its model does not answer yet
        return 3
    for key, value in report.items():
        if key == "warm_up" and isinstance(value, dict):
            value = value.get("text")  # "warming up the model: ... 128 of 766 tokens, about 40 s left"
        print(f"{key:14} {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    from agent.config.paths import socket_path
    from agent.ipc import reload_sync

    home = home_of(args)
    reload_sync(socket_path(home))
    print("agentd reloaded its config")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from agent.config.paths import resolve_home
    from agent.daemon.install import install, uninstall

    home = resolve_home(args.home)
    if args.action == "install":
        print(install(run_command(args, home), home))
    else:
        print(uninstall())
    return 0
