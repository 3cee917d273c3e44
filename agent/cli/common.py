"""What most commands share: the home folder, the settings, a model in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def load_context(args: argparse.Namespace):
    """Settings and home folder from the common options."""
    from agent.config.paths import resolve_home, select_user_config
    from agent.config.settings import load_settings

    home = resolve_home(args.home)
    config = select_user_config(home, getattr(args, "config", None))
    return load_settings(config, overrides={"model.path": getattr(args, "model", None)}), home


def home_of(args: argparse.Namespace) -> Path:
    """The home folder alone: commands that only talk to a running daemon need no valid config,
    so a typo in config.yaml never stops `status`, `stop`, `ask` or `chat` from reaching it."""
    from agent.config.paths import resolve_home

    return resolve_home(args.home)


def settings_or_defaults(args: argparse.Namespace):
    """The settings, or the defaults with one line on stderr when the config is broken
    (`chat` reads its voice settings, but need not refuse to reach the daemon for a typo)."""
    from agent.config.paths import select_user_config
    from agent.config.settings import settings_or_defaults as load

    settings, problem = load(select_user_config(home_of(args), getattr(args, "config", None)),
                             overrides={"model.path": getattr(args, "model", None)})
    if problem:
        print(f"agentd: {problem} (using the defaults here; `agentd doctor` checks the config)", file=sys.stderr)
    return settings


def build_local_app(args: argparse.Namespace, health=None):
    from agent.daemon.assembly import build_app
    from agent.llm.catalog import set_offline_mode

    set_offline_mode()
    settings, home = load_context(args)
    app = build_app(settings, home, health=health)
    print(f"agentd: model {app.engine.name}" + (f" ({app.model_note})" if app.is_demo else ""), file=sys.stderr)
    return app


def agentd_script() -> Path:
    """agentd.py, the console script's file: at the top of a checkout, or in site-packages."""
    import agentd

    return Path(agentd.__file__).resolve()
