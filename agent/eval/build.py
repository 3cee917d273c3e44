"""Wiring the eval: its settings, the sample home, and the agent built as `agentd run` builds it.

The agent comes from `agent.app.build_app` (the same model loading, tools, skills, sampling
and decoding settings as a user's agent), given the simulated home instead of a connection to
the configured MQTT broker / Home Assistant, and no store (each case brings its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from agent.eval.cases import Case, CaseFileError, LoadedCases
from agent.eval.home import HomeFile, SimulatedHome, devices_from, read_home_file


def has_constrained_setting() -> bool:
    """Whether this build has `model.constrained` (constrained tool-call decoding)."""
    from agent.config.settings import ModelSettings

    return "constrained" in ModelSettings.model_fields


def eval_settings(base: Any, home_file: HomeFile | None, *, with_intents: bool, skills: list[str] | None,
                  constrained: bool | None = None) -> Any:
    """The user's settings with the eval's home, skills, phrase path and decoding setting."""
    from agent.home_control.config import HomeSettings

    update: dict[str, Any] = {"intents": base.intents.model_copy(update={"enabled": with_intents})}
    if home_file is not None:
        section = _merge(base.home.model_dump(), home_file.section)
        try:
            update["home"] = HomeSettings.model_validate(section)
        except ValidationError as exc:
            lines = [f"{home_file.path}: home.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors(include_url=False)]
            raise CaseFileError("\n".join(dict.fromkeys(lines))) from None
    else:  # no sample home: the user's own devices stay out of it, and are never contacted
        update["home"] = base.home.model_copy(update={"devices": []})
    if skills is not None:
        update["skills"] = base.skills.model_copy(update={"enabled": list(skills)})
    model_update = {}
    if constrained is not None:
        if not has_constrained_setting():
            raise CaseFileError("this build of agentd has no model.constrained setting to compare")
        model_update["constrained"] = constrained
    if model_update:
        update["model"] = base.model.model_copy(update=model_update)
    return base.model_copy(update=update)


def with_skills(settings: Any, skills: tuple[str, ...] | list[str] | None) -> Any:
    if skills is None:
        return settings
    return settings.model_copy(update={"skills": settings.skills.model_copy(update={"enabled": list(skills)})})


def registry_for(settings: Any, home: Path | None, skills: tuple[str, ...] | list[str] | None) -> Any:
    """The tool registry an agent would have with these skills (core tools + the skills' tools)."""
    from agent.daemon.assembly import core_registry, effective_skill_settings
    from agent.skills.loader import load_skills

    skillset = load_skills(effective_skill_settings(with_skills(settings, skills)), home)
    registry = core_registry()
    skillset.register(registry)
    return registry


def simulated_home(settings: Any) -> SimulatedHome:
    return SimulatedHome(devices_from(settings))


def load_home(loaded: LoadedCases) -> HomeFile | None:
    return read_home_file(loaded.home_path) if loaded.home_path is not None else None


def skill_switcher(agent: Any, settings: Any, home: Path, sim: SimulatedHome | None, loaded: LoadedCases) -> Callable[[Case], None]:
    """A hook that gives the agent the case's skills (a change rebuilds tools and instructions)."""
    from agent.daemon.assembly import apply_skills, device_slots

    current: list[Any] = [object()]

    def use(case: Case) -> None:
        wanted = tuple(loaded.skills_for(case) or ()) if loaded.skills_for(case) is not None else None
        if wanted == current[0]:
            return
        slots = device_slots(sim) if sim is not None else None
        apply_skills(agent, with_skills(settings, wanted), home, None, slots)
        current[0] = wanted

    return use


def build_agent_app(settings: Any, home: Path, sim: SimulatedHome | None) -> Any:
    """The App (model, agent, skills) for one variant, on the simulated home."""
    from agent.daemon.assembly import build_app

    service = sim.service() if sim is not None else None
    return build_app(settings, home, with_store=False, home_control=service, small_demo_prompt=False)


def _merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key (as a user config merges into the defaults); the rest replaces."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
    return merged


def make_runner(agent: Any, settings: Any, home: Path, loaded: LoadedCases, home_file: HomeFile | None,
                sim: SimulatedHome | None, workdir: Path, *, variant: str = "default", full_replies: bool = False) -> Any:
    """An EvalRunner for this agent: the case's skills, the home's states, the home's comparer."""
    from agent.eval.runner import EvalRunner
    from agent.eval.score import home_comparer

    return EvalRunner(
        agent, workdir=workdir, variant=variant, home=sim, home_states=home_file.states if home_file else {},
        comparer=home_comparer(sim, agent.clock.now), full_replies=full_replies,
        use_skills=skill_switcher(agent, settings, home, sim, loaded),
    )
