"""`agentd listen` and `agentd devices`."""

from __future__ import annotations

import argparse

from agent.cli.common import build_local_app, load_context


def cmd_listen(args: argparse.Namespace) -> int:
    """The voice pipeline on the microphone or a WAV file, each stage printed with its time."""
    from agent.voice.door import house_words
    from agent.voice.service import agent_respond, listen_command, socket_respond

    from agent.config.paths import models_dir

    settings, home = load_context(args)
    if not args.local:
        from agent.config.paths import socket_path
        from agent.daemon.process import running_pid

        if running_pid(home) is not None:  # the daemon runs the commands (push-to-talk)
            return listen_command(args, voice=settings.voice, respond=socket_respond(socket_path(home)),
                                  models_dir=models_dir(home), language=settings.language)
    app = build_local_app(args)
    try:
        return listen_command(args, voice=settings.voice, respond=agent_respond(app.agent),
                              hints=house_words(app.agent, app.home_control), models_dir=models_dir(home),
                              language=settings.language)
    finally:
        app.close()


def cmd_devices(args: argparse.Namespace) -> int:
    from agent.voice.service import devices_command

    return devices_command(args)
