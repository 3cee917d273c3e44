"""Skills: discovery, SKILL.md checks, broken skills, trust, enable/disable, reload, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import stat
import textwrap
from pathlib import Path

import pytest

from agent.config.settings import load_settings
from agent.skills.loader import BUNDLED_DIR, load_skills, trust_skill
from agent.cli.skills import add_parser
from agent.tools import ToolRegistry

GREET_TOOLS = '''
from agent import tool


@tool
def greet(name: str) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet.
    """
    return "hello " + name
'''


def make_skill(root: Path, folder: str, front: str, body: str = "Instructions.\n", tools: str | None = None) -> Path:
    """A skill folder with a SKILL.md (front matter given as YAML lines) and maybe a tools.py."""
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "SKILL.md").write_text(f"---\n{textwrap.dedent(front).strip()}\n---\n{body}", encoding="utf-8")
    if tools is not None:
        (path / "tools.py").write_text(textwrap.dedent(tools), encoding="utf-8")
    return path


def settings(paths=(), enabled=None, disabled=()):
    overrides = {"skills.paths": [str(p) for p in paths], "skills.disabled": list(disabled)}
    if enabled is not None:
        overrides["skills.enabled"] = list(enabled)
    return load_settings(overrides=overrides)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def bundled(tmp_path) -> Path:
    path = tmp_path / "bundled"
    make_skill(path, "greeter", "name: greeter\ndescription: Greets people.", "Greet warmly.\n", GREET_TOOLS)
    return path


def load(home, bundled, **kwargs):
    return load_skills(settings(**kwargs), home, bundled_dir=bundled)


# ---------------------------------------------------------------------------- discovery


def test_skills_come_from_bundled_home_and_configured_paths(tmp_path, home, bundled):
    make_skill(home / "skills", "in-home", "name: in-home\ndescription: From HOME/skills.")
    extra = tmp_path / "extra"
    make_skill(extra, "from-path", "name: from-path\ndescription: From skills.paths.")
    single = make_skill(tmp_path, "single", "name: single\ndescription: A path that is one skill.")
    make_skill(home / "relative", "rel", "name: rel\ndescription: Relative to home.")
    skillset = load(home, bundled, paths=[extra, single, "relative"])
    assert [s.name for s in skillset.skills] == ["greeter", "in-home", "from-path", "single", "rel"]
    assert [s.bundled for s in skillset.skills] == [True, False, False, False, False]
    assert skillset.get("greeter").enabled and skillset.get("greeter").trusted
    assert skillset.problems == []


def test_the_real_bundled_kitchen_skill_loads_and_registers(home):
    skillset = load_skills(settings(), home)
    kitchen = skillset.get("kitchen")
    assert kitchen.bundled and kitchen.enabled and kitchen.problems == [] and kitchen.notes == []
    registry = ToolRegistry()
    assert skillset.register(registry) == []
    assert registry.get("convert_units").skill == "kitchen"
    assert any(text.startswith("## Skill: kitchen") for text in skillset.instructions())
    assert (BUNDLED_DIR / "kitchen" / "SKILL.md").is_file()


def test_a_missing_configured_folder_is_reported(tmp_path, home, bundled):
    skillset = load(home, bundled, paths=[tmp_path / "nowhere"])
    assert skillset.problems == [f"skills.paths: {tmp_path / 'nowhere'} is not a folder"]
    assert skillset.get("greeter").enabled


def test_instruction_only_skill_in_another_agents_convention(home, bundled):
    make_skill(bundled, "pdf-notes", """
        name: pdf-notes
        description: How to summarise PDFs for this household.
        license: Apache-2.0
        allowed-tools: Read Grep
        metadata:
          author: someone
    """, "# PDF notes\n\nAlways give page numbers.\n")
    skill = load(home, bundled).get("pdf-notes")
    assert skill.enabled and skill.tools == [] and skill.notes == [] and skill.problems == []
    assert skill.prompt_text() == "## Skill: pdf-notes\nHow to summarise PDFs for this household.\n\n# PDF notes\n\nAlways give page numbers."


# ---------------------------------------------------------------------------- broken skills

BROKEN = [
    ("bad-yaml", "name: bad-yaml\ndescription: [unclosed\nrisk: read", None, r"SKILL.md: line [34]: YAML syntax error"),
    ("no-description", "name: no-description", None, r"SKILL.md: line 2: description: required key is missing"),
    ("bad-risk", "name: bad-risk\ndescription: x\nrisk: dangerous", None, r"SKILL.md: line 4: risk: Input should be 'read', 'write' or 'confirm'"),
    ("Bad Name", "description: no name, and the folder name is no name", None, r"SKILL.md: line 2: no `name:`"),
    ("bad-phrase", 'name: bad-phrase\ndescription: x\nphrases:\n  - template: "turn [the lights"\n    tool: greet',
     None, r"SKILL.md: line 5: phrases\[0\]: template 'turn \[the lights': \[ is never closed"),
    ("unquoted-slot", "name: unquoted-slot\ndescription: x\nphrases:\n  - template: \"greet {name}\"\n    tool: greet\n"
     "    args: {name: {name}}", None, r"SKILL.md: line 5: phrases\[0\]: args.name: put slot references in quotes"),
    ("import-error", "name: import-error\ndescription: x", "from agent import tool\n\nimport not_a_real_module_xyz\n",
     r"tools.py: line 3: ModuleNotFoundError: No module named 'not_a_real_module_xyz'"),
    ("syntax-error", "name: syntax-error\ndescription: x", "def broken(:\n    pass\n", r"tools.py: line 1: SyntaxError"),
    ("no-hints", "name: no-hints\ndescription: x", 'from agent import tool\n\n\n@tool\ndef shout(text):\n    """Shout."""\n    return text\n',
     r"tools.py: line 4: ToolDefinitionError: .*parameter 'text' has no type hint"),
    ("needs-module", "name: needs-module\ndescription: x\nrequires: [not_a_real_module_xyz]", None,
     r"SKILL.md: needs the Python module 'not_a_real_module_xyz', which is not installed"),
]


@pytest.mark.parametrize("folder, front, tools, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_skill_is_skipped_with_its_file_and_line(home, bundled, folder, front, tools, expected):
    (bundled / folder).mkdir()
    (bundled / folder / "SKILL.md").write_text(f"---\n{front}\n---\nBody.\n", encoding="utf-8")
    if tools is not None:
        (bundled / folder / "tools.py").write_text(tools, encoding="utf-8")
    skillset = load(home, bundled)
    broken = next(s for s in skillset.skills if s.path.name == folder)
    assert not broken.enabled and broken.status.startswith("broken: ")
    assert len(broken.problems) == 1
    assert str(bundled / folder) in broken.problems[0]
    assert re.search(expected, broken.problems[0]), broken.problems[0]
    assert skillset.get("greeter").enabled  # the others carry on
    registry = ToolRegistry()
    skillset.register(registry)
    assert registry.names() == ["greet"]
    assert all(folder not in text for text in skillset.instructions())


def test_no_front_matter_at_all(home, bundled):
    (bundled / "plain").mkdir()
    (bundled / "plain" / "SKILL.md").write_text("# Just Markdown\n", encoding="utf-8")
    skill = load(home, bundled).get("plain")
    assert skill.problems == [f"{bundled / 'plain' / 'SKILL.md'}: line 1: expected '---' to start the YAML front matter (name, description)"]


def test_a_misspelt_key_is_a_note_not_a_failure(home, bundled):
    make_skill(bundled, "typo", 'name: typo\ndescription: x\nphrase:\n  - template: "hi"')
    skill = load(home, bundled).get("typo")
    assert skill.enabled
    assert skill.notes == [f"{bundled / 'typo' / 'SKILL.md'}: line 4: unknown key 'phrase' ignored (did you mean 'phrases'?)"]


def test_a_tool_name_already_taken_switches_that_skill_off(home, bundled):
    make_skill(bundled, "zz-copycat", "name: zz-copycat\ndescription: x", tools=GREET_TOOLS)
    skillset = load(home, bundled)
    registry = ToolRegistry()
    problems = skillset.register(registry)
    assert problems == [f"skill zz-copycat: {bundled / 'zz-copycat' / 'tools.py'}: tool 'greet' is already defined elsewhere"]
    assert registry.get("greet").skill == "greeter"
    assert [s.name for s in skillset.enabled()] == ["greeter"]


def test_two_skills_with_one_name_keep_the_first(tmp_path, home, bundled):
    make_skill(home / "skills", "greeter", "name: greeter\ndescription: An impostor.")
    skillset = load(home, bundled)
    first, second = skillset.skills
    assert first.bundled and first.enabled
    assert not second.enabled and "was found first" in second.problems[0]


def test_skill_risk_raises_every_tool_to_at_least_that_tier(home, bundled):
    make_skill(bundled, "careful", "name: careful\ndescription: x\nrisk: confirm", tools=GREET_TOOLS.replace("greet", "wave"))
    skill = load(home, bundled).get("careful")
    assert [(t.name, t.risk) for t in skill.tools] == [("wave", "confirm")]


# ---------------------------------------------------------------------------- trust


def test_a_user_skill_needs_trust_and_a_changed_byte_revokes_it(home, bundled, caplog):
    folder = make_skill(home / "skills", "weather", "name: weather\ndescription: Local weather.", tools=GREET_TOOLS.replace("greet", "forecast"))
    expected = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("SKILL.md", "tools.py")}

    skillset = load(home, bundled)
    skill = skillset.get("weather")
    assert not skill.enabled and not skill.trusted and skill.tools == []
    assert skill.files == expected
    assert skill.status == "not trusted (new skill: not trusted yet); run `agentd skills trust weather`"
    skillset.log_report()
    assert all(digest in caplog.text for digest in expected.values())  # shown the first time it is seen
    refusals = load(home, bundled).refusals()
    assert [(r.name, r.reason, r.files) for r in refusals] == [("weather", "new skill: not trusted yet", expected)]

    trusted = trust_skill(settings(), home, "weather", bundled_dir=bundled)
    assert trusted.enabled and [t.name for t in trusted.tools] == ["forecast"]
    record = json.loads((home / "trusted_skills.json").read_text())
    assert record["skills"]["weather"]["files"] == expected
    assert stat.S_IMODE((home / "trusted_skills.json").stat().st_mode) == 0o600
    assert load(home, bundled).refusals() == []

    source = (folder / "tools.py").read_bytes()
    (folder / "tools.py").write_bytes(source[:-1] + b" ")  # one byte
    skill = load(home, bundled).get("weather")
    assert not skill.enabled and skill.refusal == "changed since it was trusted: tools.py changed"
    (folder / "helper.py").write_text("x = 1\n")
    assert load(home, bundled).get("weather").refusal == "changed since it was trusted: tools.py changed, helper.py added"

    trust_skill(settings(), home, "weather", bundled_dir=bundled)
    assert load(home, bundled).get("weather").enabled


def test_untrusted_code_is_never_imported(home, bundled):
    marker = home / "ran"
    make_skill(home / "skills", "sneaky", "name: sneaky\ndescription: x", tools=f"open({str(marker)!r}, 'w').close()\n")
    load(home, bundled)
    assert not marker.exists()


def test_bundled_skills_cannot_and_need_not_be_trusted(home, bundled):
    with pytest.raises(ValueError, match="bundled skill"):
        trust_skill(settings(), home, "greeter", bundled_dir=bundled)
    with pytest.raises(LookupError, match="no skill named 'nope'"):
        trust_skill(settings(), home, "nope", bundled_dir=bundled)


def test_a_corrupt_trust_file_trusts_nothing(home, bundled):
    make_skill(home / "skills", "weather", "name: weather\ndescription: x")
    trust_skill(settings(), home, "weather", bundled_dir=bundled)
    (home / "trusted_skills.json").write_text("{not json")
    skill = load(home, bundled).get("weather")
    assert not skill.enabled and "cannot read the trusted skills" in skill.refusal
    trust_skill(settings(), home, "weather", bundled_dir=bundled)
    assert load(home, bundled).get("weather").enabled


# ---------------------------------------------------------------------------- choosing and reloading


def test_enabled_and_disabled_lists(home, bundled):
    make_skill(bundled, "notes", "name: notes\ndescription: x")
    skillset = load(home, bundled, enabled=["notes"])
    assert [s.name for s in skillset.enabled()] == ["notes"]
    assert skillset.get("greeter").status == "disabled in config (skills.enabled / skills.disabled)"
    skillset = load(home, bundled, disabled=["notes", "ghost"])
    assert [s.name for s in skillset.enabled()] == ["greeter"]
    assert skillset.get("notes").status == "disabled in config (skills.enabled / skills.disabled)"
    assert skillset.problems == ["skills: no skill named 'ghost' was found (check skills.enabled/disabled)"]
    assert load(home, bundled, enabled=["notes"], disabled=["notes"]).enabled() == []


def test_a_disabled_user_skill_is_not_refused(home, bundled):
    make_skill(home / "skills", "weather", "name: weather\ndescription: x")
    assert [r.name for r in load(home, bundled).refusals()] == ["weather"]
    assert load(home, bundled, disabled=["weather"]).refusals() == []


def test_reload_picks_up_a_new_skill_and_changed_code(home, bundled):
    assert [s.name for s in load(home, bundled).enabled()] == ["greeter"]
    folder = make_skill(bundled, "counter", "name: counter\ndescription: x", tools=GREET_TOOLS.replace("hello ", "one "))
    first = load(home, bundled).get("counter")
    assert first.enabled and first.tools[0].function(name="x") == "one x"
    (folder / "tools.py").write_text(textwrap.dedent(GREET_TOOLS.replace("hello ", "two ")))
    again = load(home, bundled).get("counter")
    assert again.tools[0].function(name="x") == "two x"


# ---------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home")
    common.add_argument("--config")
    add_parser(parser.add_subparsers(), common)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_list_show_trust(home, capsys):
    folder = make_skill(home / "skills", "weather", "name: weather\ndescription: Local weather.", tools=GREET_TOOLS.replace("greet", "forecast"))
    digest = hashlib.sha256((folder / "tools.py").read_bytes()).hexdigest()

    assert run_cli(["skills", "list", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "kitchen  enabled  [bundled]" in out and "weather  not trusted (new skill" in out

    assert run_cli(["skills", "show", "weather", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"{digest}  tools.py" in out and "status   not trusted" in out

    assert run_cli(["skills", "trust", "weather", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"{digest}  tools.py" in out and "Now: enabled." in out

    assert run_cli(["skills", "show", "weather", "--home", str(home)]) == 0
    assert "tool     forecast [read]" in capsys.readouterr().out
    assert run_cli(["skills", "show", "nope", "--home", str(home)]) == 1
    assert run_cli(["skills", "trust", "kitchen", "--home", str(home)]) == 1
    assert "bundled skill" in capsys.readouterr().err


def test_files_in_a_linked_folder_are_covered_by_trust(tmp_path, home, bundled):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lib.py").write_text("x = 1\n")
    folder = make_skill(home / "skills", "linked", "name: linked\ndescription: x")
    (folder / "lib").symlink_to(outside, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    trust_skill(settings(), home, "linked", bundled_dir=bundled)
    assert "lib/lib.py" in load(home, bundled).get("linked").files
    (outside / "lib.py").write_text("x = 2\n")
    assert load(home, bundled).get("linked").refusal == "changed since it was trusted: lib/lib.py changed"
