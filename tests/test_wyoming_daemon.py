"""`agentd run` with `wyoming.enabled`: the real daemon process, its real model (the trained
tiny Qwen3.5) and its Wyoming service, reached as Home Assistant reaches it."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from wyoming.handle import Handled

from daemon_proc import RealDaemon, greedy_config, short_home
from agent.testkit.agent_model import trained_tool_model
from ha_wyoming import HOST, ha_converse, ha_describe
from mosquitto import free_port
from agent.testkit.speech import need

pytestmark = pytest.mark.slow


def test_the_daemon_serves_home_assistant_when_wyoming_is_enabled():
    need("espeak-ng")
    model = trained_tool_model()
    home = short_home()
    port = free_port()
    config = greedy_config(home)
    config.write_text(config.read_text() + f"wyoming:\n  enabled: true\n  host: {HOST}\n  port: {port}\n")
    daemon = RealDaemon(home, config, model)
    try:
        status = daemon.start()

        async def ask():
            info = await ha_describe(port)
            # The model learned this line for a fresh conversation, which a new id of Home
            # Assistant's starts.
            return info, await ha_converse(port, "Hello!", "01HA-REAL")

        info, answer = asyncio.run(asyncio.wait_for(ask(), 60))
        assert status["wyoming"] == {"address": f"{HOST}:{port}"}, status
        assert status["services"]["wyoming"] == "running"
        assert info.asr and info.tts and info.handle
        assert isinstance(answer, Handled) and answer.text == "Hello! How can I help?"
    finally:
        daemon.close()
        shutil.rmtree(home, ignore_errors=True)
