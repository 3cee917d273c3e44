"""`agentd home import`: Home Assistant's entities as `home.devices`, chosen by the person.

Reads the entity, device and area registries, the states (friendly names) and the entities
exposed to Assist over the websocket. Without a choice it only lists what there is, by area
and domain; with `--area`, `--domain` and/or `--exposed` it writes the chosen entities as a
`home:` block the person can edit and copy into their config. Nothing is chosen by default,
so the model never sees a device the person did not pick.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from agent.home_control.devices import HomeControlError

# Home Assistant domains agentd can drive, as device kinds.
KIND_OF_DOMAIN = {"light": "light", "switch": "switch", "fan": "switch", "input_boolean": "switch",
                  "sensor": "sensor", "binary_sensor": "sensor", "cover": "cover", "lock": "lock",
                  "climate": "climate"}
ASSIST = "conversation"  # the assistant id of Home Assistant's own voice assistant


@dataclass(frozen=True)
class Candidate:
    """One entity that could become a device."""

    entity_id: str
    name: str
    kind: str
    area: str | None
    exposed: bool
    unit: str | None = None

    @property
    def domain(self) -> str:
        return self.entity_id.split(".")[0]

    def as_device(self) -> dict:
        device = {"name": self.name, "kind": self.kind, "room": self.area, "entity_id": self.entity_id}
        if self.unit and self.kind == "sensor":
            device["unit"] = self.unit
        return {k: v for k, v in device.items() if v is not None}


def read_candidates(link: Any) -> list[Candidate]:
    """Every drivable, enabled, visible entity, with its area and name (link: a loaded HassLink)."""
    entities = {e["entity_id"]: e for e in link.command("config/entity_registry/list")}
    devices = {d["id"]: d for d in link.command("config/device_registry/list")}
    areas = {a["area_id"]: a["name"] for a in link.command("config/area_registry/list")}
    exposed = _exposed(link)
    found = []
    for entity_id, state in sorted(link.snapshot().items()):
        kind = KIND_OF_DOMAIN.get(entity_id.split(".")[0])
        entry = entities.get(entity_id) or {}
        if kind is None or entry.get("disabled_by") or entry.get("hidden_by") or entry.get("entity_category"):
            continue  # not drivable, or the person or the integration tucked it away
        device = devices.get(entry.get("device_id")) or {}
        area_id = entry.get("area_id") or device.get("area_id")
        attributes = state.get("attributes") or {}
        name = entry.get("name") or attributes.get("friendly_name") or entity_id.split(".")[1]
        found.append(Candidate(entity_id, spoken(name), kind, spoken(areas[area_id]) if area_id in areas else None,
                               exposed.get(entity_id, False), attributes.get("unit_of_measurement")))
    return found


def _exposed(link: Any) -> dict[str, bool]:
    """Which entities the person exposed to Assist (an older Home Assistant: none known)."""
    try:
        listed = link.command("homeassistant/expose_entity/list")["exposed_entities"]
    except HomeControlError:
        return {}
    return {entity_id: bool(assistants.get(ASSIST)) for entity_id, assistants in listed.items()}


def spoken(name: str) -> str:
    """A name as people say it: lower case, single spaces."""
    return " ".join(name.replace("_", " ").split()).lower()


def choose(candidates: list[Candidate], *, areas: list[str] = (), domains: list[str] = (),
           exposed: bool = False) -> list[Candidate]:
    """The candidates that pass every filter given (areas and domains: any of those listed)."""
    wanted_areas = {spoken(a) for a in areas}
    chosen = [c for c in candidates
              if (not wanted_areas or c.area in wanted_areas)
              and (not domains or c.domain in domains)
              and (not exposed or c.exposed)]
    return _unique_names(chosen)


def _unique_names(chosen: list[Candidate]) -> list[Candidate]:
    """agentd needs each name once; a repeated one gets its room, then its entity id."""
    counts = defaultdict(int)
    for c in chosen:
        counts[c.name] += 1
    result, taken = [], set()
    for c in chosen:
        name = c.name
        if counts[name] > 1 and c.area and c.area not in name:
            name = f"{c.area} {name}"
        if name in taken:
            name = spoken(c.entity_id.replace(".", " "))
        taken.add(name)
        result.append(Candidate(c.entity_id, name, c.kind, c.area, c.exposed, c.unit))
    return result


def listing(candidates: list[Candidate]) -> str:
    """What there is, by area, for a person choosing: entity, kind, name, exposed mark."""
    by_area: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_area[c.area or "(no area)"].append(c)
    lines = []
    for area in sorted(by_area):
        lines.append(f"{area}:")
        for c in by_area[area]:
            mark = "  exposed" if c.exposed else ""
            lines.append(f"  {c.entity_id:40} {c.kind:8} {c.name}{mark}")
    return "\n".join(lines)


def config_block(chosen: list[Candidate], url: str) -> str:
    """The `home:` block for the chosen entities, with a header saying where it came from."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# {len(chosen)} devices from Home Assistant at {url}, {when} (agentd home import).\n"
              "# Edit the names and rooms freely (they are what you will say), then copy this\n"
              "# block into your config.yaml; the token stays in $HASS_TOKEN or home.hass.token_file.\n")
    body = {"home": {"hass": {"url": url}, "devices": [c.as_device() for c in chosen]}}
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def write_new_file(path: Path, text: str) -> None:
    """Write text to a file that must not exist yet, all at once (a temp file, then a link)."""
    path = Path(path)
    if path.exists():
        raise HomeControlError(f"{path} already exists: name another file with --out, or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.link(temp, path)  # fails if the file appeared meanwhile: never overwrite it
    except FileExistsError:
        raise HomeControlError(f"{path} already exists: name another file with --out, or remove it first") from None
    finally:
        os.unlink(temp)
