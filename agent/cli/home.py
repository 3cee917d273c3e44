"""`agentd home import`: list Home Assistant's entities, or write the chosen ones as a config block.
`agentd home cameras`: take one snapshot from each configured camera, to check them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `home` command to agentd's subparsers (`common` holds --home/--config)."""
    home = sub.add_parser("home", help="home control: import devices from Home Assistant, check the cameras")
    actions = home.add_subparsers(metavar="ACTION")
    imp = actions.add_parser(
        "import", parents=[common],
        help="list Home Assistant's entities; with --area/--domain/--exposed, write them as home.devices")
    imp.add_argument("--url", help="Home Assistant's address (default: home.hass.url)")
    imp.add_argument("--area", action="append", default=[], help="take the entities of this area (repeatable)")
    imp.add_argument("--domain", action="append", default=[],
                     help="take the entities of this domain, e.g. light (repeatable)")
    imp.add_argument("--exposed", action="store_true", help="take the entities exposed to Assist")
    imp.add_argument("--out", type=Path, help="write the block to this new file (default: print it)")
    imp.set_defaults(handler=home_import)
    cams = actions.add_parser("cameras", parents=[common],
                              help="take one snapshot from each configured camera and say how it went")
    cams.add_argument("--out", type=Path, help="save the snapshots in this folder (default: nothing is saved)")
    cams.set_defaults(handler=home_cameras)


def home_cameras(args: argparse.Namespace) -> int:
    """One line per camera: the snapshot's size, format and age, or why there is none."""
    import asyncio
    import time

    from agent.cli.common import load_context
    from agent.home_control import start_home
    from agent.home_control.devices import HomeControlError

    settings, _ = load_context(args)
    service = start_home(settings)
    try:
        cameras = [d for d in service.registry if d.kind == "camera"]
        if not cameras:
            print("no cameras are configured: a camera is a home.devices entry with kind: camera")
            return 0
        failed = 0
        for camera in cameras:
            try:
                snap = asyncio.run(service.cameras.snapshot(camera))
            except HomeControlError as exc:
                print(f"{camera.name}: no picture: {exc}")
                failed += 1
                continue
            saved = ""
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                path = args.out / f"{camera.name.replace(' ', '-')}.{snap.format}"
                path.write_bytes(snap.data)
                saved = f"; saved as {path}"
            print(f"{camera.name}: {snap.describe(time.time())}{saved}")
        return 1 if failed else 0
    finally:
        service.stop()


def home_import(args: argparse.Namespace) -> int:
    from agent.home_control.devices import HomeControlError  # not at import: `agentd --help` stays instant

    try:
        return _import(args)
    except HomeControlError as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return 1


def _import(args: argparse.Namespace) -> int:
    from agent.config.paths import resolve_home, select_user_config
    from agent.home_control.devices import HomeControlError
    from agent.home_control.hass import read_token
    from agent.home_control.hass_import import choose, config_block, listing, read_candidates, write_new_file
    from agent.home_control.hass_ws import HassLink
    from agent.config.settings import load_settings

    home = resolve_home(getattr(args, "home", None))
    hass = load_settings(select_user_config(home, getattr(args, "config", None))).home.hass
    url = (args.url or hass.url or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise HomeControlError("no Home Assistant address: give --url http://HOST:8123 or set home.hass.url")
    token = read_token(hass)
    if not token:
        raise HomeControlError(f"no Home Assistant access token: put a long-lived token in ${hass.token_env}"
                        " (made on your Home Assistant profile page)")
    link = HassLink(url, token, timeout_s=hass.timeout_s, reconnect_max_s=hass.timeout_s)
    link.start()
    try:
        if not link.wait_loaded(hass.timeout_s):
            raise HomeControlError(link.problem or f"Home Assistant at {url} did not send its states in "
                            f"{hass.timeout_s:g} s")
        candidates = read_candidates(link)
    finally:
        link.stop()
    if not (args.area or args.domain or args.exposed):
        print(listing(candidates))
        print(f"\n{len(candidates)} entities. Choose with --area, --domain and/or --exposed; "
              "nothing is imported unless you choose it.")
        return 0
    chosen = choose(candidates, areas=args.area, domains=args.domain, exposed=args.exposed)
    if not chosen:
        raise HomeControlError("no entity matches that choice: run `agentd home import` alone to see the areas "
                        "and domains there are")
    block = config_block(chosen, url)
    if args.out is None:
        print(block, end="")
    else:
        write_new_file(args.out, block)
        print(f"wrote {len(chosen)} devices to {args.out}: edit it, then copy its home: block "
              "into your config.yaml")
    return 0
