"""`agentd chat` and `agentd ask`: talking to the daemon, or to a model in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from agent.cli.common import build_local_app, home_of, load_context, settings_or_defaults
from agent.cli.daemon import cmd_start


def ensure_daemon(args: argparse.Namespace) -> Path:
    """The daemon's socket; start the daemon first when --start was given."""
    from agent.config.paths import socket_path
    from agent.daemon.process import running_pid

    home = home_of(args)
    if getattr(args, "start", False) and running_pid(home) is None:
        cmd_start(args)
    return socket_path(home)


def cmd_chat(args: argparse.Namespace) -> int:
    from agent.config.paths import models_dir
    from agent.tui import run_chat
    from agent.voice.service import hear_once

    settings = settings_or_defaults(args)
    return run_chat(ensure_daemon(args), hear=hear_once(settings.voice, models_dir=models_dir(home_of(args)),
                                                          language=settings.language),
                    max_image_bytes=settings.vision.max_image_bytes)


def cmd_ask(args: argparse.Namespace) -> int:
    from agent.images import ImageError

    try:
        if args.local or not args.text:
            return ask_locally(args)
        return ask_daemon(args)
    except ImageError as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return 2


def ask_daemon(args: argparse.Namespace) -> int:
    from agent import events as ev
    from agent.images import read_image_file
    from agent.ipc import ask_sync

    def show(event) -> None:
        if not isinstance(event, tuple(ev.STEP_EVENTS.values())):
            return
        print_event(event, as_json=args.json)

    # The files' bytes go to the daemon, which checks and shrinks them (it has the vision extra).
    limit = settings_or_defaults(args).vision.max_image_bytes if args.image else 0
    images = [read_image_file(path, max_bytes=limit) for path in args.image]
    reply = ask_sync(ensure_daemon(args), " ".join(args.text), thinking=args.think, explain=args.explain,
                     on_event=show, on_confirm=confirm_on_terminal, images=images)
    return 0 if reply.stopped_by in ("done", "cancelled") else 1


def ask_locally(args: argparse.Namespace) -> int:
    """The model in this process: one question, or a line-by-line prompt."""
    pictures = local_pictures(args)  # before the model loads: a bad file is reported at once
    app = build_local_app(args)
    try:
        app.warm_up()  # the saved prefix, or built now with progress shown: not inside the turn's time limit
        app.engine.warmup.show_until_ready(lambda line: print(f"agentd: {line}", file=sys.stderr))
        if args.text:
            _, done = asyncio.run(print_turn(app.agent, " ".join(args.text), thinking=args.think, as_json=args.json,
                                          explain=args.explain, images=pictures))
            return 1 if done.stopped_by == "error" else 0
        return prompt_loop(app.agent, thinking=args.think, as_json=args.json)
    finally:
        app.close()


def local_pictures(args: argparse.Namespace) -> list:
    """--image files checked and shrunk here (the model runs in this process)."""
    if not getattr(args, "image", None):
        return []
    from agent.images import picture_from_file

    settings, _ = load_context(args)
    return [picture_from_file(path, max_pixels=settings.vision.max_pixels, max_bytes=settings.vision.max_image_bytes)
            for path in args.image]


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
        conversation, _ = asyncio.run(print_turn(agent, line, thinking=thinking, as_json=as_json, conversation_id=conversation))


async def print_turn(agent, text: str, *, thinking: bool | None, as_json: bool, conversation_id: str | None = None,
                     explain: bool = False, images: list | None = None):
    """Run one turn in this process and print it; (its conversation id, its ReplyDone)."""
    conversation_id = conversation_id or (agent.store.new_conversation(source="cli") if agent.store else None)

    async def confirm(tool, arguments: dict) -> bool:
        return await asyncio.to_thread(confirm_on_terminal, tool.name, arguments)

    async for event in agent.respond(text, conversation_id=conversation_id, who="cli", thinking=thinking, confirm=confirm,
                                     explain=explain, images=images):
        print_event(event, as_json=as_json)
    return conversation_id, event


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
        if event.stats.per_call:
            print(f"  ({event.stats.prefill_line()})", file=sys.stderr)


def confirm_on_terminal(request_or_name, arguments: dict | None = None) -> bool:
    """Ask the person at this terminal to allow a confirm-tier tool; no terminal means no."""
    name = getattr(request_or_name, "tool", request_or_name)
    arguments = getattr(request_or_name, "arguments", arguments)
    if not sys.stdin.isatty():
        return False
    answer = input(f"\nAllow {name}({json.dumps(arguments)})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
