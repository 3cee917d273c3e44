"""Where the folders at the repository's top (config/, tools/, skills/) are at run time.

The design keeps them at the top of a checkout. A wheel must not claim the generic names
`tools` and `skills` in site-packages, so setup.py maps them inside the `agent` package
(`agent/bundled_config/`, `agent/core_tools/`, `agent/bundled_skills/`). This module finds
them either way, so nothing else needs to know which kind of install it runs from.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
# The checkout's folder -> its name inside the agent package in a wheel (setup.py reads this).
WHEEL_NAMES = {"config": "bundled_config", "tools": "core_tools", "skills": "bundled_skills"}
CORE_TOOLS = "agent.core_tools"  # the core tools' package name, whichever install this is


def bundled_dir(name: str) -> Path:
    """The folder `name` ("config", "tools" or "skills"): inside the package in a wheel,
    else at the top of the checkout (a source tree or an editable install)."""
    inside = PACKAGE_DIR / WHEEL_NAMES[name]
    return inside if inside.is_dir() else CHECKOUT_DIR / name


def core_tools() -> ModuleType:
    """The core tools package, always imported as `agent.core_tools`.

    A wheel (and an editable install made from this setup.py) has it as a real subpackage;
    a checkout run with another project's interpreter does not, so it is loaded from the
    checkout's tools/ under the same name. One name means one copy of each tool module."""
    if CORE_TOOLS in sys.modules:
        return sys.modules[CORE_TOOLS]
    try:
        return importlib.import_module(CORE_TOOLS)
    except ModuleNotFoundError as exc:
        if exc.name != CORE_TOOLS:
            raise  # a tool module's own import failed: that is a bug to see
    folder = bundled_dir("tools")
    spec = importlib.util.spec_from_file_location(CORE_TOOLS, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[CORE_TOOLS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[CORE_TOOLS]
        raise
    return module


def core_tool_module(name: str) -> ModuleType:
    """One core tool module by its short name ("clock", "arithmetic", ...)."""
    core_tools()
    return importlib.import_module(f"{CORE_TOOLS}.{name}")
