"""`agentd skills list | show NAME | trust NAME`: what skills there are, and approving user skills."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `skills` command to agentd's subparsers (`common` holds --home/--config)."""
    skills = sub.add_parser("skills", help="list, show or trust skills")
    actions = skills.add_subparsers(metavar="ACTION")
    actions.add_parser("list", parents=[common], help="every skill found and whether it is on").set_defaults(handler=skills_list)
    show = actions.add_parser("show", parents=[common], help="one skill: files and their SHA-256, tools, phrases")
    show.add_argument("name")
    show.set_defaults(handler=skills_show)
    trust = actions.add_parser("trust", parents=[common], help="approve a skill's current files so it can run")
    trust.add_argument("name")
    trust.set_defaults(handler=skills_trust)


def _context(args: argparse.Namespace) -> tuple[Any, Path]:
    """Settings and home folder from --home/--config, as every agentd command reads them."""
    from agent.config.paths import resolve_home, select_user_config
    from agent.config.settings import load_settings

    from agent.daemon.assembly import effective_skill_settings

    home = resolve_home(getattr(args, "home", None))
    settings = load_settings(select_user_config(home, getattr(args, "config", None)))
    return effective_skill_settings(settings), home


def skills_list(args: argparse.Namespace) -> int:
    """One line per skill, then every problem."""
    from agent.skills.loader import load_skills

    skillset = load_skills(*_context(args))
    if not skillset.skills:
        print("No skills found.")
    width = max((len(s.name) for s in skillset.skills), default=0)
    for skill in skillset.skills:
        origin = "bundled" if skill.bundled else str(skill.path)
        print(f"{skill.name:{width}}  {skill.status}  [{origin}]")
    for line in skillset.messages():
        print(f"  {line}", file=sys.stderr)
    return 0


def skills_show(args: argparse.Namespace) -> int:
    """Everything about one skill, with the SHA-256 of each file (what `trust` approves)."""
    from agent.skills.loader import load_skills

    skill = load_skills(*_context(args)).get(args.name)
    if skill is None:
        print(f"agentd: no skill named {args.name!r} (see `agentd skills list`)", file=sys.stderr)
        return 1
    print(f"{skill.name}: {skill.description}")
    print(f"  path     {skill.path}{' (bundled)' if skill.bundled else ''}")
    print(f"  status   {skill.status}")
    if skill.risk:
        print(f"  risk     every tool at least {skill.risk}")
    if skill.requires:
        print(f"  requires {', '.join(skill.requires)}")
    for tool in skill.tools:
        print(f"  tool     {tool.name} [{tool.risk}]: {tool.description}")
    for phrase in skill.phrases:
        for template in phrase.template:
            print(f"  phrase   {template!r} -> {phrase.tool}")
    print(f"  instructions: {len(skill.instructions)} characters")
    print("  files (SHA-256):")
    for name, digest in skill.files.items():
        print(f"    {digest}  {name}")
    for line in [*skill.problems, *skill.notes]:
        print(f"  ! {line}")
    return 0


def skills_trust(args: argparse.Namespace) -> int:
    """Approve a user skill's files as they are now; a later change needs a new approval."""
    from agent.skills.loader import trust_skill

    settings, home = _context(args)
    try:
        skill = trust_skill(settings, home, args.name)
    except (LookupError, ValueError) as exc:
        print(f"agentd: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"Trusted {skill.name} ({skill.path}) with these files:")
    for name, digest in skill.files.items():
        print(f"  {digest}  {name}")
    print(f"Now: {skill.status}. A running agentd picks it up on `agentd reload`.")
    return 0
