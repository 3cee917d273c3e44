"""The `agentd` command: its parser, and errors shown as one line instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys

from agent.cli.chat import cmd_ask, cmd_chat
from agent.cli.common import agentd_script
from agent.cli.daemon import cmd_reload, cmd_run, cmd_service, cmd_start, cmd_status, cmd_stop
from agent.cli.doctor import cmd_doctor
from agent.cli.models import cmd_model_list, cmd_model_pull
from agent.cli.voice import cmd_devices, cmd_listen

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
    from agent.config.paths import HomeError
    from agent.llm.catalog import ModelNotFoundError, PullError, UnknownModelError
    from agent.llm.demo_fetch import DemoFetchError
    from agent.llm.demo_model import DemoModelError
    from agent.llm.mlx_engine import ModelLoadError
    from agent.salvage import SalvageError
    from agent.ipc import DaemonNotRunning, RequestFailed
    from agent.daemon.process import StartError
    from agent.config.settings import ConfigError

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
    ask.add_argument("--image", action="append", default=[], metavar="FILE",
                     help="a picture for the model to look at (repeat for more; needs the vision extra)")
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

    from agent.cli.skills import add_parser as add_skills_parser

    add_skills_parser(sub, common)
    from agent.cli.jobs import add_jobs_parser

    add_jobs_parser(sub, common)
    from agent.cli.eval import add_parser as add_eval_parser

    add_eval_parser(sub, common)
    from agent.cli.home import add_parser as add_home_parser

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


def cmd_bench(argv: list[str]) -> int:
    """The bench/ suite, which lives next to this file in a source checkout."""
    checkout = agentd_script().parent
    if not (checkout / "bench" / "suite.py").exists():
        print("agentd bench: the benchmarks ship with the source checkout (bench/), not with the package", file=sys.stderr)
        return 2
    sys.path.insert(0, str(checkout))
    from bench.suite import main as bench_main

    return bench_main(argv)
