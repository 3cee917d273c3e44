"""The daemon's assembly: the app from the settings, then its services (the schedule, voice,
Wyoming, MCP servers, the HTTP API) around one Daemon, then its event loop until it stops.

`agentd run` calls `run_daemon`; nothing else wires these parts together.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable


def run_daemon(settings: Any, home: Path, *, build: Callable[[Any], Any], reload_settings: Callable[[], Any]) -> int:
    """Serve until stopped; the exit code. `build(health)` loads the app (the model, the store,
    the tools), `reload_settings()` reads the config again for `agentd reload`."""
    import agent.daemon.startup as startup
    from agent.config.settings import ConfigError
    from agent.daemon.core import Daemon, store_hooks
    from agent.daemon.health import Health
    from agent.daemon.netguard import NetGuard, configured_hosts
    from agent.home_control.state_watch import StateWatch
    from agent.schedule import Runtime, Scheduler

    # first: from here on every connection beyond loopback is recorded, and refused unless configured
    network = NetGuard(configured_hosts(settings)).install()
    health = Health()  # what the daemon finds wrong from here on: told in status, doctor, chat
    startup.announce(home)  # until the socket answers, `agentd status` reads what it is doing here
    try:
        app = build(health)
        app.warm_up()
    finally:
        startup.done(home)
    # run_forever installs its own console and file logs; main()'s basicConfig console
    # handler would otherwise print every line a second time.
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)

    runtime = Runtime(store=app.store, registry=app.agent.registry, settings=settings, clock=app.agent.clock,
                      home_control=app.home_control, vision=app.agent.vision)
    # State triggers follow app.home_control, which app.reload replaces (the re-sync rebinds).
    state_watch = StateWatch(lambda: app.home_control, lambda job_id, spec: scheduler.fire(job_id, spec))
    scheduler = Scheduler(home, settings, runtime=runtime, state_hook=state_watch, health=health)
    app.agent.schedule = scheduler  # the agent's schedule tools get it in their ToolContext

    def reload() -> None:
        try:
            new = reload_settings()
        except ConfigError as exc:  # the daemon keeps serving on its last good settings
            health.report("config", f"{exc}: not applied, agentd runs on its last good config "
                                    "(correct the file, then `agentd reload`)")
            raise
        health.clear("config", "the config loads again")
        network.allow(configured_hosts(new))
        app.reload(new)
        runtime.home_control = app.home_control  # the reload started a new one: jobs' tool calls use it
        runtime.vision = app.agent.vision
        scheduler.reload(new, registry=app.agent.registry)
        if voice:  # new devices or rooms: their names join the speech model's hints
            from agent.voice.door import house_words

            voice.use_words(house_words(app.agent, app.home_control))
        if wyoming:  # allow_confirm applies from the next request (a new address needs a restart)
            wyoming.settings = new

    daemon = Daemon(
        agent=app.agent,
        home=home,
        settings=settings,
        **store_hooks(app.store),
        status=lambda: {**app.status(), **network.status(), **scheduler.status(),
                        **(voice.status() if voice else {}), **(wyoming.status() if wyoming else {}),
                        **(api.status() if api else {})},
        reload=reload,
        on_close=lambda: (state_watch.close(), app.close()),
        health=health,
    )
    runtime.submit = daemon.submit  # scheduled turns run as who="schedule:ID"
    voice = voice_door(daemon, app, settings, home)
    runtime.notify = voice.announce if voice else daemon.announce  # speaks `speak: true` ones
    daemon.add_service("schedule", scheduler.serve)
    if voice:
        daemon.add_service("voice", voice.serve)
    wyoming = None
    if settings.wyoming.enabled:  # Home Assistant's Assist reaches agentd over Wyoming
        from agent.config.paths import models_dir
        from agent.voice.door import house_words
        from agent.wyoming import wyoming_door

        wyoming = wyoming_door(daemon, settings, stt=voice.pipeline.stt if voice else None,
                               hints=house_words(app.agent, app.home_control), models_dir=models_dir(home))
        daemon.add_service("wyoming", wyoming.serve)
    mcp = app.start_mcp(settings)
    if mcp:
        daemon.add_service("mcp", mcp.serve)
    api = None
    if settings.api.enabled:  # off: no network port at all
        from agent.api.server import ApiServer

        api = ApiServer(daemon, settings.api, home, model_path=app.engine.path, ready=app.ready)
        daemon.add_service("api", api.serve)
    return daemon.run_forever()


def voice_door(daemon, app, settings, home: Path):
    """The microphone door when voice.enabled; None (with the reason logged) when it cannot be."""
    if not settings.voice.enabled:
        return None
    from agent.config.paths import models_dir
    from agent.voice.door import VoiceDoor, house_words
    from agent.voice.stt import ModelNotFound

    try:
        return VoiceDoor(daemon, settings.voice, store=app.store, hints=house_words(app.agent, app.home_control),
                         models_dir=models_dir(home), language=settings.language)
    except (ModelNotFound, ValueError) as exc:  # no speech model, no speech program
        logging.getLogger("agentd").error("voice is off: %s", exc)
        return None
