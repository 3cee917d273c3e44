"""The wheel's layout; everything else about the project is in pyproject.toml.

config/, tools/ and skills/ stay at the top of the checkout (the design fixes them there), but
a wheel must not claim the generic names `tools` and `skills` in site-packages, so they go
inside the `agent` package under the names agent/bundled.py finds them by.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

TOP = Path(__file__).resolve().parent
# Kept in step with agent.bundled.WHEEL_NAMES (a test checks), which is not imported here:
# building the wheel must not need agent's dependencies.
WHEEL_NAMES = {"config": "bundled_config", "tools": "core_tools", "skills": "bundled_skills"}


def mapped_packages() -> dict[str, str]:
    """Package name in the wheel -> folder in the checkout, for each top folder and its subfolders."""
    mapping = {}
    for folder, name in WHEEL_NAMES.items():
        mapping[f"agent.{name}"] = folder
        for sub in sorted((TOP / folder).iterdir()):
            if sub.is_dir() and not sub.name.startswith((".", "__")):  # a bundled skill's folder
                mapping[f"agent.{name}.{sub.name}"] = f"{folder}/{sub.name}"
    return mapping


MAPPED = mapped_packages()
setup(
    # namespace: data-only folders such as agent/eval/data/ are packages too
    packages=find_namespace_packages(include=["agent", "agent.*"], exclude=["*__pycache__*"]) + list(MAPPED),
    package_dir=MAPPED,
)
