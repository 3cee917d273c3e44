"""A camera looked at by a real (tiny, random) Qwen3.5 vision-language model: look_at_camera's
picture goes through the assembly's vision hook into mlx-vlm, inside the tool call."""

from __future__ import annotations

import functools

import pytest

from agent.actions import Action, Executor
from agent.config.settings import load_settings
from agent.daemon.assembly import vision_hook
from agent.home_control import start_home
from agent.tools import ToolRegistry
from cameras import load_home_tools, picture
from fakes import run

pytest.importorskip("mlx_vlm", reason="the vision extra (pip install 'agentd[vision]'); "
                                      "tests/test_cameras.py covers the tool with a stand-in hook")

tools = load_home_tools("home_skill_tools_under_test_cameras_vision")


@pytest.fixture(scope="module")
def engine(tiny_qwen_vl):
    from agent.llm.mlx_engine import MLXEngine

    engine = MLXEngine(tiny_qwen_vl)
    yield engine
    engine.close()


def test_a_camera_picture_reaches_the_vision_model(engine, tmp_path):
    # A grey 640x480 JPEG makes this random model pick padded ids past the tokenizer's end within
    # 64 tokens, which mlx-vlm's detokenizer cannot spell (IndexError): the engine rules them out.
    (tmp_path / "porch.jpg").write_bytes(picture(640, 480, (128, 128, 128)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    settings = load_settings(overrides={"home": {"devices": [
        {"name": "porch camera", "kind": "camera", "snapshot": {"file": str(tmp_path / "porch.jpg")}},
        {"name": "broken camera", "kind": "camera", "snapshot": {"file": str(tmp_path / "broken.jpg")}},
    ]}})
    hook = vision_hook(engine, settings.vision)
    assert hook is not None, engine.cannot_see()
    # Enough tokens to reach a padded id (a random model's words).
    hook = functools.partial(hook, max_tokens=64)
    service = start_home(settings)
    registry = ToolRegistry()
    registry.add_module(tools)
    executor = Executor(registry, home_control=service, vision=hook, timeout_s=120)

    def look(camera):
        return run(executor.run(Action(tool="look_at_camera",
                                       arguments={"camera": camera, "question": "Is the door open?"})), timeout=180)

    try:
        seen, broken = look("porch camera"), look("broken camera")
    finally:
        service.stop()
    assert seen.ok, seen
    answer, details = seen.result.rsplit("\n", 1)
    assert answer.strip()  # a random model's words, but words from the vision path
    assert details.startswith("(porch camera: ") and "JPEG from file" in details
    assert broken.status == "error" and "the model could not look at the picture from broken camera" in broken.result
