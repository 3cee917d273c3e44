"""agentd command line: run | ask | model | ... (heavy imports stay inside the commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its options are the bench suite's own
        return cmd_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args) or 0
    except user_facing_errors() as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def user_facing_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message tells the user what is wrong and what to do: no traceback."""
    from agent.home import HomeError
    from agent.llm.catalog import ModelNotFoundError, PullError, UnknownModelError
    from agent.llm.demo_fetch import DemoFetchError
    from agent.llm.demo_model import DemoModelError
    from agent.llm.mlx_engine import ModelLoadError
    from agent.salvage import SalvageError
    from agent.ipc import DaemonNotRunning, RequestFailed
    from agent.runtime import StartError
    from agent.settings import ConfigError

    return (ConfigError, HomeError, ModelNotFoundError, UnknownModelError, DemoModelError, PullError, ModelLoadError,
            DaemonNotRunning, RequestFailed, SalvageError, StartError, DemoFetchError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentd", description="An offline home agent: Qwen3.5 on MLX with tool calling.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="state folder (default: $AGENTD_HOME or the platform's user data folder)")
    common.add_argument("--config", help="a YAML file overriding config/default.yaml (default: HOME/config.yaml if present)")
    common.add_argument("--model", help="a local MLX model folder (overrides model.path)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.set_defaults(handler=cmd_run)
    sub.add_parser("start", parents=[common], help="start the daemon in the background").set_defaults(handler=cmd_start)
    sub.add_parser("stop", parents=[common], help="stop the background daemon").set_defaults(handler=cmd_stop)
    sub.add_parser("status", parents=[common], help="is the daemon running, and how is it doing").set_defaults(handler=cmd_status)
    sub.add_parser("reload", parents=[common], help="make the daemon re-read its config").set_defaults(handler=cmd_reload)

    chat = sub.add_parser("chat", parents=[common], help="the chat window (talks to the daemon)")
    chat.add_argument("--start", action="store_true", help="start the daemon first if it is not running")
    chat.set_defaults(handler=cmd_chat)

    ask = sub.add_parser("ask", parents=[common], help="send one message to the daemon and print the reply")
    ask.add_argument("text", nargs="*", help="what to ask (none: a line-by-line prompt, with --local)")
    ask.add_argument("--think", action="store_true", default=None, help="let the model think first")
    ask.add_argument("--json", action="store_true", help="print the step events as JSON lines")
    ask.add_argument("--start", action="store_true", help="start the daemon first if it is not running")
    ask.add_argument("--local", action="store_true", help="load the model in this process instead of using the daemon")
    ask.add_argument("--explain", action="store_true", help="say which path answered (phrase or model) and why")
    ask.set_defaults(handler=cmd_ask)

    listen = sub.add_parser("listen", parents=[common], help="run the voice pipeline on the microphone or a recording")
    listen.add_argument("--wav", help="a 16-bit WAV recording to use instead of the microphone")
    listen.add_argument("--once", action="store_true", help="stop after one command; no wake phrase needed (push-to-talk)")
    listen.add_argument("--realtime", action="store_true", help="play the recording at its real speed")
    listen.add_argument("--local", action="store_true", help="run the commands in this process even if the daemon runs")
    listen.set_defaults(handler=cmd_listen)
    sub.add_parser("devices", help="list the audio inputs and outputs").set_defaults(handler=cmd_devices)
    # Listed for --help; main() hands `agentd bench ...` to the bench suite's own parser.
    sub.add_parser("bench", add_help=False, help="run the benchmarks that fit this machine (--help for options)")

    from agent.skills_cli import add_parser as add_skills_parser

    add_skills_parser(sub, common)
    from agent.schedule.cli import add_jobs_parser

    add_jobs_parser(sub, common)
    from agent.eval.cli import add_parser as add_eval_parser

    add_eval_parser(sub, common)
    from agent.home_control.cli import add_parser as add_home_parser

    add_home_parser(sub, common)

    service = sub.add_parser("service", help="install agentd as a login service (launchd or systemd --user)")
    service.add_argument("action", choices=["install", "uninstall"])
    service.add_argument("--home", help="state folder the service uses")
    service.set_defaults(handler=cmd_service)

    doctor = sub.add_parser("doctor", parents=[common], help="check the set-up and say what to fix")
    doctor.set_defaults(handler=cmd_doctor)

    model = sub.add_parser("model", help="list or pull local MLX models")
    model_sub = model.add_subparsers(metavar="ACTION")
    listing = model_sub.add_parser("list", parents=[common], help="installed models and their sizes")
    listing.set_defaults(handler=cmd_model_list)
    pull = model_sub.add_parser("pull", parents=[common], help="download a model (the only command that uses the network)")
    pull.add_argument("name", help="a preset (qwen3.5-0.8b, -2b, -4b, -9b; demo: the bundled demo model's weights; whisper-tiny.en, -base.en, -small.en, "
                                   "-medium.en, whisper-large-v3) or a Hugging Face repo id")
    pull.set_defaults(handler=cmd_model_pull)
    return parser


def load_context(args: argparse.Namespace):
    """Settings and home folder from the common options."""
    from agent.home import resolve_home, select_user_config
    from agent.settings import load_settings

    home = resolve_home(args.home)
    config = select_user_config(home, getattr(args, "config", None))
    return load_settings(config, overrides={"model.path": getattr(args, "model", None)}), home


def home_of(args: argparse.Namespace) -> Path:
    """The home folder alone: commands that only talk to a running daemon need no valid config,
    so a typo in config.yaml never stops `status`, `stop`, `ask` or `chat` from reaching it."""
    from agent.home import resolve_home

    return resolve_home(args.home)


def settings_or_defaults(args: argparse.Namespace):
    """The settings, or the defaults with one line on stderr when the config is broken
    (`chat` reads its voice settings, but need not refuse to reach the daemon for a typo)."""
    from agent.home import select_user_config
    from agent.settings import settings_or_defaults as load

    settings, problem = load(select_user_config(home_of(args), getattr(args, "config", None)),
                             overrides={"model.path": getattr(args, "model", None)})
    if problem:
        print(f"agentd: {problem} (using the defaults here; `agentd doctor` checks the config)", file=sys.stderr)
    return settings


def build_local_app(args: argparse.Namespace, health=None):
    from agent.app import build_app
    from agent.llm.catalog import set_offline_mode

    set_offline_mode()
    settings, home = load_context(args)
    app = build_app(settings, home, health=health)
    print(f"agentd: model {app.engine.name}" + (f" ({app.model_note})" if app.is_demo else ""), file=sys.stderr)
    return app


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon in the foreground: socket, turns, services; logs to console and file."""
    from agent.daemon import Daemon, store_hooks
    from agent.runtime import running_pid

    settings, home = load_context(args)
    pid = running_pid(home)
    if pid is not None:
        print(f"agentd: already running (pid {pid}) on {home}", file=sys.stderr)
        return 1
    from agent import startup
    from agent.health import Health
    from agent.netguard import NetGuard, configured_hosts

    # first: from here on every connection beyond loopback is recorded, and refused unless configured
    network = NetGuard(configured_hosts(settings)).install()
    health = Health()  # what the daemon finds wrong from here on: told in status, doctor, chat
    startup.announce(home)  # until the socket answers, `agentd status` reads what it is doing here
    try:
        app = build_local_app(args, health)
        app.warm_up()
    finally:
        startup.done(home)
    # run_forever installs its own console and file logs; main()'s basicConfig console
    # handler would otherwise print every line a second time.
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
    from agent.home_control.state_watch import StateWatch
    from agent.schedule import Runtime, Scheduler
    from agent.settings import ConfigError

    runtime = Runtime(store=app.store, registry=app.agent.registry, settings=settings, clock=app.agent.clock)
    # State triggers follow app.home_control, which app.reload replaces (the re-sync rebinds).
    state_watch = StateWatch(lambda: app.home_control, lambda job_id, spec: scheduler.fire(job_id, spec))
    scheduler = Scheduler(home, settings, runtime=runtime, state_hook=state_watch, health=health)

    def reload() -> None:
        try:
            new = load_context(args)[0]
        except ConfigError as exc:  # the daemon keeps serving on its last good settings
            health.report("config", f"{exc}: not applied, agentd runs on its last good config "
                                    "(correct the file, then `agentd reload`)")
            raise
        health.clear("config", "the config loads again")
        network.allow(configured_hosts(new))
        app.reload(new)
        scheduler.reload(new, registry=app.agent.registry)
        if voice:  # new devices or rooms: their names join the speech model's hints
            from agent.voice.door import house_words

            voice.use_words(house_words(app.agent, app.home_control))
        if wyoming:  # allow_confirm applies from the next request (a new address needs a restart)
            wyoming.settings = new

    daemon = Daemon(
        agent=app.agent,
        home=home,
        settings=settings,
        **store_hooks(app.store),
        status=lambda: {**app.status(), **network.status(), **scheduler.status(),
                        **(voice.status() if voice else {}), **(wyoming.status() if wyoming else {})},
        reload=reload,
        on_close=lambda: (state_watch.close(), app.close()),
        health=health,
    )
    runtime.submit = daemon.submit  # scheduled turns run as who="schedule:ID"
    voice = voice_door(daemon, app, settings, home)
    runtime.notify = voice.announce if voice else daemon.announce  # speaks `speak: true` ones
    daemon.add_service("schedule", scheduler.serve)
    if voice:
        daemon.add_service("voice", voice.serve)
    wyoming = None
    if settings.wyoming.enabled:  # Home Assistant's Assist reaches agentd over Wyoming
        from agent.home import models_dir
        from agent.voice.door import house_words
        from agent.wyoming import wyoming_door

        wyoming = wyoming_door(daemon, settings, stt=voice.pipeline.stt if voice else None,
                               hints=house_words(app.agent, app.home_control), models_dir=models_dir(home))
        daemon.add_service("wyoming", wyoming.serve)
    mcp = app.start_mcp(settings)
    if mcp:
        daemon.add_service("mcp", mcp.serve)
    if settings.api.enabled:  # off: no network port at all
        from agent.api.server import ApiServer

        daemon.add_service("api", ApiServer(daemon, settings.api, home, model_path=app.engine.path, ready=app.ready).serve)
    return daemon.run_forever()


def voice_door(daemon, app, settings, home: Path):
    """The microphone door when voice.enabled; None (with the reason logged) when it cannot be."""
    if not settings.voice.enabled:
        return None
    from agent.home import models_dir
    from agent.voice.door import VoiceDoor, house_words
    from agent.voice.stt import ModelNotFound

    try:
        return VoiceDoor(daemon, settings.voice, store=app.store, hints=house_words(app.agent, app.home_control),
                         models_dir=models_dir(home))
    except (ModelNotFound, ValueError) as exc:  # no speech model, no speech program
        logging.getLogger("agentd").error("voice is off: %s", exc)
        return None


def cmd_listen(args: argparse.Namespace) -> int:
    """The voice pipeline on the microphone or a WAV file, each stage printed with its time."""
    from agent.voice.door import house_words
    from agent.voice.service import agent_respond, listen_command, socket_respond

    from agent.home import models_dir

    settings, home = load_context(args)
    if not args.local:
        from agent.home import socket_path
        from agent.runtime import running_pid

        if running_pid(home) is not None:  # the daemon runs the commands (push-to-talk)
            return listen_command(args, voice=settings.voice, respond=socket_respond(socket_path(home)),
                                  models_dir=models_dir(home))
    app = build_local_app(args)
    try:
        return listen_command(args, voice=settings.voice, respond=agent_respond(app.agent),
                              hints=house_words(app.agent, app.home_control), models_dir=models_dir(home))
    finally:
        app.close()


def cmd_devices(args: argparse.Namespace) -> int:
    from agent.voice.service import devices_command

    return devices_command(args)


def cmd_bench(argv: list[str]) -> int:
    """The bench/ suite, which lives next to this file in a source checkout."""
    checkout = Path(__file__).resolve().parent
    if not (checkout / "bench" / "suite.py").exists():
        print("agentd bench: the benchmarks ship with the source checkout (bench/), not with the package", file=sys.stderr)
        return 2
    sys.path.insert(0, str(checkout))
    from bench.suite import main as bench_main

    return bench_main(argv)


def cmd_start(args: argparse.Namespace) -> int:
    from agent.home import socket_path
    from agent.ipc import status_sync
    from agent.runtime import running_pid, start_in_background
    from agent.startup import starting

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
    command = [sys.executable, str(Path(__file__).resolve()), "run", "--home", str(home)]
    for flag in ("config", "model"):
        if getattr(args, flag, None):
            command += [f"--{flag}", str(Path(getattr(args, flag)).expanduser().resolve())]
    return command


def cmd_stop(args: argparse.Namespace) -> int:
    from agent.runtime import stop_daemon

    home = home_of(args)
    try:
        pid = stop_daemon(home)  # a model step too slow to reach a stop point is killed
    except TimeoutError as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return 1
    print(f"agentd (pid {pid}) stopped" if pid else "agentd was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.home import socket_path
    from agent.ipc import DaemonNotRunning, status_sync

    home = home_of(args)
    try:
        report = status_sync(socket_path(home))
    except DaemonNotRunning as exc:
        from agent.startup import starting

        print(starting(home) or exc)  # one that is loading its model does not answer yet
        return 3
    for key, value in report.items():
        if key == "warm_up" and isinstance(value, dict):
            value = value.get("text")  # "warming up the model: ... 128 of 766 tokens, about 40 s left"
        print(f"{key:14} {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    from agent.home import socket_path
    from agent.ipc import reload_sync

    home = home_of(args)
    reload_sync(socket_path(home))
    print("agentd reloaded its config")
    return 0


def ensure_daemon(args: argparse.Namespace) -> Path:
    """The daemon's socket; start the daemon first when --start was given."""
    from agent.home import socket_path
    from agent.runtime import running_pid

    home = home_of(args)
    if getattr(args, "start", False) and running_pid(home) is None:
        cmd_start(args)
    return socket_path(home)


def cmd_chat(args: argparse.Namespace) -> int:
    from agent.home import models_dir
    from agent.tui import run_chat
    from agent.voice.service import hear_once

    settings = settings_or_defaults(args)
    return run_chat(ensure_daemon(args), hear=hear_once(settings.voice, models_dir=models_dir(home_of(args))))


def cmd_ask(args: argparse.Namespace) -> int:
    if args.local or not args.text:
        return ask_locally(args)
    from agent import events as ev
    from agent.ipc import ask_sync

    def show(event) -> None:
        if not isinstance(event, tuple(ev.STEP_EVENTS.values())):
            return
        print_event(event, as_json=args.json)

    reply = ask_sync(ensure_daemon(args), " ".join(args.text), thinking=args.think, explain=args.explain,
                     on_event=show, on_confirm=confirm_on_terminal)
    return 0 if reply.stopped_by in ("done", "cancelled") else 1


def ask_locally(args: argparse.Namespace) -> int:
    """The model in this process: one question, or a line-by-line prompt."""
    app = build_local_app(args)
    try:
        app.warm_up()  # the saved prefix, or built now with progress shown: not inside the turn's time limit
        app.engine.warmup.show_until_ready(lambda line: print(f"agentd: {line}", file=sys.stderr))
        if args.text:
            asyncio.run(print_turn(app.agent, " ".join(args.text), thinking=args.think, as_json=args.json, explain=args.explain))
            return 0
        return prompt_loop(app.agent, thinking=args.think, as_json=args.json)
    finally:
        app.close()


def prompt_loop(agent, *, thinking: bool | None, as_json: bool) -> int:
    """A minimal line-by-line chat in this process (the rich TUI talks to the daemon)."""
    conversation = None
    print("Type a message; an empty line or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            return 0
        if not line:
            return 0
        conversation = asyncio.run(print_turn(agent, line, thinking=thinking, as_json=as_json, conversation_id=conversation))


async def print_turn(agent, text: str, *, thinking: bool | None, as_json: bool, conversation_id: str | None = None, explain: bool = False) -> str | None:
    """Run one turn in this process and print it."""
    conversation_id = conversation_id or (agent.store.new_conversation(source="cli") if agent.store else None)

    async def confirm(tool, arguments: dict) -> bool:
        return await asyncio.to_thread(confirm_on_terminal, tool.name, arguments)

    async for event in agent.respond(text, conversation_id=conversation_id, who="cli", thinking=thinking, confirm=confirm, explain=explain):
        print_event(event, as_json=as_json)
    return conversation_id


def print_event(event, *, as_json: bool) -> None:
    """Reply text on stdout; thinking, tool calls and notes on stderr (or all as JSON lines)."""
    from agent import events as ev

    if as_json:
        print(json.dumps(ev.to_dict(event), ensure_ascii=False, default=str), flush=True)
    elif isinstance(event, ev.TextDelta):
        print(event.text, end="", flush=True)
    elif isinstance(event, ev.ThinkingDelta):
        print(event.text, end="", file=sys.stderr, flush=True)
    elif isinstance(event, ev.ToolFinished):
        print(f"\n  [{event.name} -> {event.result[:200]}]", file=sys.stderr)
    elif isinstance(event, ev.Note):
        print(f"\n  ({event.text})", file=sys.stderr)
    elif isinstance(event, ev.ReplyDone):
        print()


def confirm_on_terminal(request_or_name, arguments: dict | None = None) -> bool:
    """Ask the person at this terminal to allow a confirm-tier tool; no terminal means no."""
    name = getattr(request_or_name, "tool", request_or_name)
    arguments = getattr(request_or_name, "arguments", arguments)
    if not sys.stdin.isatty():
        return False
    answer = input(f"\nAllow {name}({json.dumps(arguments)})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_service(args: argparse.Namespace) -> int:
    from agent.home import resolve_home
    from agent.service import install, uninstall

    home = resolve_home(args.home)
    if args.action == "install":
        print(install(run_command(args, home), home))
    else:
        print(uninstall())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import run_checks

    return run_checks(args.home, getattr(args, "config", None), getattr(args, "model", None))


def cmd_model_list(args: argparse.Namespace) -> int:
    from agent.home import models_dir
    from agent.llm.catalog import list_models

    _, home = load_context(args)
    models = list_models(models_dir(home))
    if not models:
        print("No models installed. `agentd model pull qwen3.5-4b` downloads the default.")
    for m in models:
        print(f"{m.name:40} {m.size_bytes / 1e9:6.2f} GB  {m.model_type or '?':10} {m.quantization or ''}")
    return 0


def cmd_model_pull(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.home import models_dir
    from agent.llm.catalog import pull

    _, home = load_context(args)
    if args.name == "demo":
        from agent.llm.demo_fetch import pull_demo_model

        path = pull_demo_model(models_dir(home), console=Console(stderr=True))
    else:
        path = pull(args.name, models_dir(home), console=Console(stderr=True))
    print(f"Installed {args.name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
