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
    from agent.llm.catalog import ModelNotFoundError, PullError
    from agent.llm.mlx_engine import ModelLoadError
    from agent.settings import ConfigError

    return (ConfigError, HomeError, ModelNotFoundError, PullError, ModelLoadError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentd", description="An offline home agent: Qwen3.5 on MLX with tool calling.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="state folder (default: $AGENTD_HOME or the platform's user data folder)")
    common.add_argument("--config", help="a YAML file overriding config/default.yaml (default: HOME/config.yaml if present)")
    common.add_argument("--model", help="a local MLX model folder (overrides model.path)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="start agentd in the foreground")
    run.set_defaults(handler=cmd_run)

    ask = sub.add_parser("ask", parents=[common], help="ask one question (no text: a line-by-line prompt)")
    ask.add_argument("text", nargs="*", help="what to ask")
    ask.add_argument("--think", action="store_true", default=None, help="let the model think first")
    ask.add_argument("--json", action="store_true", help="print the step events as JSON lines")
    ask.set_defaults(handler=cmd_ask)

    model = sub.add_parser("model", help="list or pull local MLX models")
    model_sub = model.add_subparsers(metavar="ACTION")
    listing = model_sub.add_parser("list", parents=[common], help="installed models and their sizes")
    listing.set_defaults(handler=cmd_model_list)
    pull = model_sub.add_parser("pull", parents=[common], help="download a model (the only command that uses the network)")
    pull.add_argument("name", help="a preset (qwen3.5-0.8b, qwen3.5-2b, qwen3.5-4b, qwen3.5-9b) or a Hugging Face repo id")
    pull.set_defaults(handler=cmd_model_pull)
    return parser


def load_context(args: argparse.Namespace):
    """Settings and home folder from the common options."""
    from agent.home import resolve_home, select_user_config
    from agent.settings import load_settings

    home = resolve_home(args.home)
    config = select_user_config(home, getattr(args, "config", None))
    return load_settings(config, overrides={"model.path": getattr(args, "model", None)}), home


def build_local_app(args: argparse.Namespace):
    from agent.app import build_app
    from agent.llm.catalog import set_offline_mode

    set_offline_mode()
    settings, home = load_context(args)
    app = build_app(settings, home)
    print(f"agentd: model {app.engine.name}" + (f" ({app.model_note})" if app.is_demo else ""), file=sys.stderr)
    return app


def cmd_run(args: argparse.Namespace) -> int:
    """Start agentd: for now the in-process prompt (the daemon takes over `run`)."""
    args.text, args.think, args.json = [], None, False
    return cmd_ask(args)


def cmd_ask(args: argparse.Namespace) -> int:
    app = build_local_app(args)
    try:
        if args.text:
            asyncio.run(print_turn(app.agent, " ".join(args.text), thinking=args.think, as_json=args.json))
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


async def print_turn(agent, text: str, *, thinking: bool | None, as_json: bool, conversation_id: str | None = None) -> str | None:
    """Run one turn and print it: reply on stdout, tool calls and notes on stderr."""
    from agent import events as ev

    conversation_id = conversation_id or (agent.store.new_conversation(source="cli") if agent.store else None)
    async for event in agent.respond(text, conversation_id=conversation_id, who="cli", thinking=thinking, confirm=ask_on_terminal):
        if as_json:
            print(json.dumps(ev.to_dict(event), ensure_ascii=False), flush=True)
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
    return conversation_id


async def ask_on_terminal(tool, arguments: dict) -> bool:
    """Confirmation for confirm-tier tools when a person is at this terminal."""
    if not sys.stdin.isatty():
        return False
    answer = await asyncio.to_thread(input, f"\nAllow {tool.name}({json.dumps(arguments)})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


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
    path = pull(args.name, models_dir(home), console=Console(stderr=True))
    print(f"Installed {args.name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
