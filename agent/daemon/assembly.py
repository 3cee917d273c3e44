"""Assemble a working agent from settings: model, tools, store, clock.

Every front end (the CLI's `ask`, the daemon, `eval`, benchmarks) builds its agent here, so
they all run the same code path as a user does.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.tools import SystemClock, ToolRegistry
from agent.turn import Agent, TurnLimits

log = logging.getLogger(__name__)

PREFIX_FOLDER = "cache"  # in the home: the saved prefilled prefix (agent/llm/prefix_store.py)
SNAPSHOTS_FOLDER = "snapshots"  # in the home: camera snapshots, only when home.cameras says keep them


@dataclass
class App:
    """A built agent and the parts front ends report on."""

    agent: Agent
    engine: Any
    store: Any
    model_note: str
    is_demo: bool
    home: Path
    skills: Any = None
    home_control: Any = None  # the HomeService (MQTT / Home Assistant devices)
    mcp: Any = None  # the McpHub of the configured MCP servers (the daemon runs it)
    small_prompt: bool = False  # the demo on a CPU: the model is shown model.demo_cpu_tools only

    def status(self) -> dict:
        """The model's part of the daemon's status report."""
        return {  # `offline` comes from agent.daemon.netguard's record of connections, not from here
            "model": self.engine.name,
            "demo_model": self.is_demo,
            "tools": self.agent.registry.names(),
            "skills": [s.name for s in self.skills.enabled()] if self.skills else [],
            "warm_up": self.engine.warmup.report(),
            **self.engine.status(),  # which backend, and its caches (or what it cannot offer)
            **(self.mcp.status() if self.mcp else {}),
            **self.camera_status(),
        }

    def camera_status(self) -> dict:
        """`cameras`: one line each, when any is configured."""
        lines = self.home_control.camera_lines() if self.home_control is not None else []
        return {"cameras": lines} if lines else {}

    def start_mcp(self, settings: Any) -> Any:
        """The hub of the configured MCP servers, its tools joining the agent's as they come
        up; None when none is configured. The caller runs `hub.serve` (the daemon's service)."""
        if not any(server.enabled for server in settings.mcp_servers.values()):
            return None
        from agent.config.paths import log_dir
        from agent.mcp.hub import McpHub

        self.mcp = McpHub(settings.mcp_servers, on_change=self.use_mcp_tools, log_dir=log_dir(self.home))
        return self.mcp

    def use_mcp_tools(self) -> None:
        """MCP tools came or went: the next turn sees the new list (and a rebuilt prefix)."""
        from agent.mcp.tools import McpTool

        own = [t for t in self.agent.registry if not isinstance(t, McpTool)]
        self.agent.registry = ToolRegistry(own + (self.mcp.tools() if self.mcp else []))
        self.warm_up()

    def reload(self, settings: Any) -> None:
        """Apply new settings to the running agent (a different model needs a restart)."""
        if settings.model.path and str(settings.model.path) != str(self.engine.path):
            log.warning("model.path changed to %s: restart agentd to load it", settings.model.path)
        servers_before = getattr(self.agent.settings, "mcp_servers", {})
        configure(self.agent, settings)
        if self.home_control is not None:
            self.home_control.stop()
        self.home_control = self.agent.home_control = start_home_control(settings, self.home)
        self.skills = apply_skills(self.agent, settings, self.home, self.store, device_slots(self.home_control))
        if self.small_prompt:
            self.agent.registry.show_only(settings.model.demo_cpu_tools)
        if self.mcp:
            if settings.mcp_servers != servers_before:
                log.warning("mcp_servers changed: restart agentd to connect to the new set")
            self.use_mcp_tools()  # the skills' fresh registry does not hold them yet
        self.engine.forget_prompts()  # the instructions or the tools may have changed
        self.warm_up()

    def warm_up(self) -> None:
        """Prefill the system prompt + tools in the background so the first turn is quick."""
        self.engine.warm_up(self.agent.system_prompt(), self.agent.registry.schemas(), constrained=self.agent.constrained)

    def ready(self) -> bool:
        """False while the model warms up (the API answers 503 then, rather than hang)."""
        return self.engine.warmup.ready

    def close(self) -> None:
        if self.home_control is not None:
            self.home_control.stop()
        self.engine.close()
        if self.store is not None:
            self.store.close()


def core_registry() -> ToolRegistry:
    """The core tools every install has."""
    from agent.bundled import core_tools

    registry = ToolRegistry()
    for name in core_tools().CORE_TOOL_MODULES:
        registry.add_module(importlib.import_module(name))
    return registry


def sampling_from(config: Any):
    """Sampling parameters from a settings block."""
    from agent.llm.types import Sampling

    return Sampling(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        min_p=config.min_p,
        presence_penalty=config.presence_penalty,
    )


def limits_from(settings: Any) -> TurnLimits:
    a = settings.agent
    return TurnLimits(
        max_model_calls=a.max_model_calls,
        max_repeated_calls=a.max_repeated_calls,
        timeout_s=a.turn_timeout_s,
        tool_output_max_chars=a.tool_output_max_chars,
        tool_timeout_s=a.tool_timeout_s,
        history_messages=a.history_messages,
        max_tokens=settings.model.max_tokens,
    )


def clock_from(settings: Any) -> SystemClock:
    return SystemClock(settings.agent.tzinfo())


def build_app(settings: Any, home: Path, *, with_store: bool = True, home_control: Any = None,
              health: Any = None, small_demo_prompt: bool = True) -> App:
    """Load the configured model (or the demo model) and wire the agent to it.

    `home_control`: a HomeService to use instead of connecting to the configured MQTT broker
    and Home Assistant (`agentd eval` passes its simulated home). `health` (agent.daemon.health) hears
    of a damaged or unwritable store. `small_demo_prompt`: the demo model on a CPU is shown only
    `model.demo_cpu_tools` (the eval turns it off: it scores every tool)."""
    engine, note, is_demo = load_engine(settings, home)
    store = None
    if with_store:
        from agent.store import Store

        store = Store.open_in(home, health=health)
    agent = Agent(llm=engine, registry=core_registry(), system_prompt=settings.agent.system_prompt, store=store)
    configure(agent, settings)
    if home_control is None:
        home_control = start_home_control(settings, home)
    agent.home_control = home_control  # the home skill's tools get it in their ToolContext
    skills = apply_skills(agent, settings, home, store, device_slots(home_control))
    from agent.llm.demo_model import on_cpu

    small_prompt = small_demo_prompt and is_demo and on_cpu()
    if small_prompt:
        agent.registry.show_only(settings.model.demo_cpu_tools)
    return App(agent=agent, engine=engine, store=store, model_note=note, is_demo=is_demo,
               home=home, skills=skills, home_control=home_control, small_prompt=small_prompt)


def load_engine(settings: Any, home: Path) -> tuple[Any, str, bool]:
    """(engine, a line on which model and why, whether it is the demo model)."""
    if settings.model.backend == "openai":
        from agent.llm.remote_engine import RemoteEngine

        engine = RemoteEngine.from_settings(settings.model.remote)
        return engine, f"using {engine.name} (model.backend: openai)", False
    from agent.config.paths import models_dir
    from agent.llm.catalog import find_model
    from agent.llm.mlx_engine import MLXEngine
    from agent.llm.prefix_store import PrefixStore

    choice = find_model(settings.model.path, models_dir(home), settings.model.preset)
    engine = MLXEngine(choice.path, prefill_step_size=settings.model.prefill_step_size, seed=settings.model.seed,
                       prefix_store=PrefixStore(Path(home) / PREFIX_FOLDER, choice.path),
                       conversation_budget_bytes=settings.model.conversation_cache_mb * 1024 * 1024)
    return engine, choice.reason, choice.is_demo


def system_prompt_for(settings: Any) -> str:
    """agent.system_prompt, with the line asking for answers in `language` (none for English).

    Fixed per setting and placed before the skills' instructions, so the cached prefix stays
    byte-identical from turn to turn."""
    from agent.languages import answer_instruction

    line = answer_instruction(settings.language)
    return settings.agent.system_prompt if line is None else f"{settings.agent.system_prompt.rstrip()}\n\n{line}"


def configure(agent: Agent, settings: Any) -> None:
    """Apply the settings that can change while agentd runs."""
    agent.settings = settings
    agent.base_prompt = system_prompt_for(settings)
    agent.clock = clock_from(settings)
    agent.limits = limits_from(settings)
    agent.sampling = sampling_from(settings.model)
    agent.thinking_sampling = sampling_from(settings.model.thinking_sampling)
    agent.thinking = settings.model.thinking
    agent.constrained = settings.model.constrained
    agent.thinking_budget = settings.model.thinking_budget
    agent.vision = vision_hook(agent.llm, settings.vision)


def vision_hook(engine: Any, vision: Any) -> Any:
    """ToolContext.vision: `await hook(image_bytes, question) -> str`, the model's answer
    about one picture inside the running turn. None when the engine cannot see (a text-only
    model, the vision extra missing, the remote backend): a tool that needs it says so.
    A bad picture raises agent.images.ImageError (a ValueError naming what is wrong)."""
    cannot_see = getattr(engine, "cannot_see", None)
    if cannot_see is None or cannot_see() is not None:
        return None
    return functools.partial(engine.ask_about_image, max_pixels=vision.max_pixels, max_bytes=vision.max_image_bytes,
                             max_tokens=vision.answer_max_tokens)


def apply_skills(agent: Agent, settings: Any, home: Path, store: Any = None, slot_values: dict | None = None) -> Any:
    """Load the skills: their tools join the core tools, their instructions the prompt, their
    phrases the fast path. Refused (untrusted or changed) skills go to the audit log."""
    from agent.skills.intents import IntentMatcher
    from agent.skills.loader import load_skills

    skills = load_skills(effective_skill_settings(settings), home)
    registry = core_registry()
    for problem in skills.register(registry):
        log.warning("%s", problem)
    skills.log_report(log)
    agent.registry, agent.instructions = registry, skills.instructions()
    agent.intents = None
    if settings.intents.enabled:
        slots = slot_values or device_slots(None)
        agent.intents = IntentMatcher.from_skills(skills, registry, slots, fillers=[settings.agent.name],
                                                  language=settings.language, home=home_lists(agent, settings))
        for problem in agent.intents.problems:
            log.warning("%s", problem)
    if store is not None:
        for refusal in skills.refusals():
            store.audit(
                tool=f"skill:{refusal.name}", arguments={"path": str(refusal.path), "files": refusal.files},
                risk="", outcome="refused", duration_s=0.0, who="skills", detail=refusal.reason,
            )
    return skills


def effective_skill_settings(settings: Any) -> Any:
    """The settings skills are loaded with: the home skill is off while no device is configured,
    which keeps its tool schemas out of every prompt (a small model reads all of it each turn)."""
    if settings.home.devices or "home" in settings.skills.disabled:
        return settings
    quiet = settings.skills.model_copy(update={"disabled": [*settings.skills.disabled, "home"]})
    return settings.model_copy(update={"skills": quiet})


def start_home_control(settings: Any, home: Path | None = None) -> Any:
    """Connect to the configured MQTT broker / Home Assistant in the background."""
    from agent.home_control import start_home

    return start_home(settings, snapshots_dir=Path(home) / SNAPSHOTS_FOLDER if home is not None else None)


def home_lists(agent: Agent, settings: Any) -> Any:
    """The home's devices, rooms and floors as the slot lists of another language's sentences."""
    if settings.language.split("-")[0].lower() == "en":
        return None  # English phrases take device_slots
    from agent.skills.hass_actions import HomeLists

    return HomeLists.from_registry(getattr(getattr(agent, "home_control", None), "registry", None))


def device_slots(home_control: Any) -> dict:
    """Slot values for the fast phrase path: the home's device names and rooms."""
    if home_control is None:
        return {"device": [], "room": [], "secure_device": []}
    registry = home_control.registry
    return {"device": registry.slot_values(), "room": registry.rooms(), "secure_device": registry.secure_slot_values()}
