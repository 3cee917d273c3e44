"""What a wheel needs: config/, tools/ and skills/ found whether they sit at the top of a checkout
or inside the package; the core tools under one name. (The wheel itself is built, installed in a
fresh venv and run by .ci/wheel-check.)"""

import ast
from pathlib import Path

from agent import bundled
from agent.daemon.assembly import core_registry
from agent.config.settings import default_config_path
from agent.skills.loader import BUNDLED_DIR

REPO = Path(__file__).resolve().parents[1]


def test_setup_py_maps_the_folders_under_the_names_the_package_looks_for():
    tree = ast.parse((REPO / "setup.py").read_text())
    assigned = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "WHEEL_NAMES"}
    assert assigned["WHEEL_NAMES"] == bundled.WHEEL_NAMES


def test_a_checkout_finds_its_top_folders():
    assert bundled.bundled_dir("config") == REPO / "config"
    assert default_config_path() == REPO / "config" / "default.yaml"
    assert BUNDLED_DIR == REPO / "skills"


def test_the_core_tools_are_one_package_named_agent_core_tools():
    package = bundled.core_tools()
    assert package.__name__ == bundled.CORE_TOOLS == "agent.core_tools"
    assert all(name.startswith("agent.core_tools.") for name in package.CORE_TOOL_MODULES)
    clock = bundled.core_tool_module("clock")
    assert clock.__name__ == "agent.core_tools.clock" and Path(clock.__file__).parent == bundled.bundled_dir("tools")
    assert bundled.core_tools() is package  # imported once
    assert {"get_current_time", "calculate", "set_timer", "remember"} <= set(core_registry().names())


def test_the_eval_cases_ship_inside_the_package():
    from agent.eval.cases import DEFAULT_CASES

    assert DEFAULT_CASES.is_file() and (DEFAULT_CASES.parent / "home.yaml").is_file()
    assert DEFAULT_CASES.is_relative_to(REPO / "agent")


def test_the_testkit_chat_template_ships_inside_the_package():
    from agent.testkit.tiny_qwen import TEMPLATE_PATH

    assert TEMPLATE_PATH.is_file() and TEMPLATE_PATH.is_relative_to(REPO / "agent")
