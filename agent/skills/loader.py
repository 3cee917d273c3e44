"""Skills: folders with a SKILL.md (instructions, phrases) and an optional tools.py (tools).

Found in the bundled `skills/` folder, in HOME/skills and in every folder of `skills.paths`.
A user skill's code runs only once a person has trusted its files (agent.skills.trust); a broken
skill is skipped with a message naming the file and line, and the others carry on.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.bundled import bundled_dir
from agent.skills.phrases import PhraseSpec, SentenceSpec, SlotSpec
from agent.skills.manifest import NAME_PATTERN, SkillFileError, read_skill_md
from agent.tools import RISK_TIERS, Risk, Tool, ToolRegistry, tools_in
from agent.skills.trust import TrustError, TrustStore, file_digests

log = logging.getLogger(__name__)

BUNDLED_DIR = bundled_dir("skills")
SKILL_FILE = "SKILL.md"
TOOLS_FILE = "tools.py"
_MODULE_PREFIX = "agentd_skill_"


@dataclass
class Skill:
    """One skill folder as found, with why it is (or is not) enabled."""

    name: str
    path: Path
    bundled: bool
    description: str = ""
    instructions: str = ""
    risk: Risk | None = None
    phrases: list[PhraseSpec] = field(default_factory=list)
    slots: dict[str, SlotSpec] = field(default_factory=dict)
    sentences: dict[str, list[SentenceSpec]] = field(default_factory=dict)  # language -> HA-syntax phrases
    requires: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> SHA-256
    tools: list[Tool] = field(default_factory=list)
    trusted: bool = False
    enabled: bool = False
    status: str = ""  # in words: "enabled", "disabled in config", "not trusted: ...", "broken: ..."
    refusal: str | None = None  # why trust was refused (for the audit log)
    problems: list[str] = field(default_factory=list)  # each one makes the skill unusable
    notes: list[str] = field(default_factory=list)  # worth knowing, harmless

    def prompt_text(self) -> str:
        """What this skill adds to the system prompt."""
        return "\n\n".join(p for p in (f"## Skill: {self.name}\n{self.description}", self.instructions.strip()) if p)


@dataclass(frozen=True)
class Refusal:
    """A user skill kept off because its files are not the ones a person trusted."""

    name: str
    path: Path
    reason: str
    files: dict[str, str]


@dataclass
class SkillSet:
    """Every skill found, in a stable order (the prompt prefix depends on it)."""

    skills: list[Skill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the set: missing folders, unknown names

    def get(self, name: str) -> Skill | None:
        return next((s for s in self.skills if s.name == name), None)

    def enabled(self) -> list[Skill]:
        return [s for s in self.skills if s.enabled]

    def register(self, registry: ToolRegistry) -> list[str]:
        """Add the enabled skills' tools; a skill whose tool name is taken is switched off."""
        problems = []
        for skill in self.enabled():
            taken = [t.name for t in skill.tools if registry.get(t.name) is not None]
            if taken:
                skill.enabled, skill.status = False, f"broken: its tool {taken[0]!r} has the name of another tool"
                skill.problems.append(f"{skill.path / TOOLS_FILE}: tool {taken[0]!r} is already defined elsewhere")
                problems.append(f"skill {skill.name}: {skill.problems[-1]}")
                continue
            for tool in skill.tools:
                registry.add(tool, skill=skill.name)
        return problems

    def instructions(self) -> list[str]:
        """The enabled skills' prompt texts, for `Agent.instructions`."""
        return [s.prompt_text() for s in self.enabled()]

    def refusals(self) -> list[Refusal]:
        """User skills refused for trust reasons (new or changed files)."""
        return [Refusal(s.name, s.path, s.refusal, s.files) for s in self.skills if s.refusal]

    def log_report(self, logger: logging.Logger = log) -> None:
        """Log every problem, and each refused skill with its files' SHA-256 (daemon start, reload)."""
        for line in self.messages():
            logger.warning("%s", line)
        for refusal in self.refusals():
            digests = "".join(f"\n  {digest}  {name}" for name, digest in refusal.files.items())
            logger.warning("skill %s (%s) is off: %s. Its files:%s\nRun `agentd skills trust %s` to allow it.",
                           refusal.name, refusal.path, refusal.reason, digests, refusal.name)

    def messages(self) -> list[str]:
        """Every problem and note, one line each, for the log or `agentd skills list`."""
        lines = list(self.problems)
        for skill in self.skills:
            lines += [f"skill {skill.name}: {p}" for p in skill.problems]
            lines += [f"skill {skill.name}: {n}" for n in skill.notes]
        return lines


def skill_folders(settings: Any, home: Path | None, bundled_dir: Path = BUNDLED_DIR) -> tuple[list[tuple[Path, bool]], list[str]]:
    """(folder, bundled?) of every candidate skill, in search order; and missing-folder problems."""
    roots: list[tuple[Path, bool, bool]] = [(bundled_dir, True, False)]  # (root, bundled, must exist)
    if home is not None:
        roots.append((Path(home) / "skills", False, False))
    for path in settings.skills.paths:
        path = Path(path).expanduser()
        roots.append(((Path(home) / path) if home is not None and not path.is_absolute() else path, False, True))
    found, problems, seen = [], [], set()
    for root, bundled, must_exist in roots:
        if not root.is_dir():
            if must_exist:
                problems.append(f"skills.paths: {root} is not a folder")
            continue
        candidates = [root] if (root / SKILL_FILE).is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        for folder in candidates:
            if (folder / SKILL_FILE).is_file() and folder.resolve() not in seen:
                seen.add(folder.resolve())
                found.append((folder, bundled))
    return found, problems


def load_skills(settings: Any, home: Path | None, *, bundled_dir: Path = BUNDLED_DIR) -> SkillSet:
    """Find, check and load every skill; never raises for a broken skill."""
    folders, problems = skill_folders(settings, home, bundled_dir)
    trust = TrustStore.in_home(home) if home is not None else None
    config = settings.skills
    skillset = SkillSet(problems=problems)
    for folder, bundled in folders:
        skill = _read(folder, bundled)
        first = skillset.get(skill.name)
        if first is not None:
            skill.problems.append(f"another skill named {skill.name!r} was found first, in {first.path}")
        skillset.skills.append(skill)
        chosen = skill.name not in config.disabled and (config.enabled is None or skill.name in config.enabled)
        if chosen and not skill.problems:
            _check_trust(skill, trust)  # only skills that would run are refused (and audited)
        _decide(skill, chosen)
        if skill.enabled:
            _load_tools(skill)
    for name in [*(config.enabled or []), *config.disabled]:
        if skillset.get(name) is None:
            skillset.problems.append(f"skills: no skill named {name!r} was found (check skills.enabled/disabled)")
    return skillset


def _read(folder: Path, bundled: bool) -> Skill:
    """SKILL.md's front matter and body; problems instead of exceptions."""
    skill = Skill(name=folder.name, path=folder, bundled=bundled)
    try:
        skill.files = file_digests(folder)
        meta, body, notes = read_skill_md(folder / SKILL_FILE)
    except SkillFileError as exc:
        skill.problems.append(str(exc))
        return skill
    except OSError as exc:
        skill.problems.append(f"{folder}: cannot read the skill's files ({exc.strerror or exc})")
        return skill
    skill.name = meta.name or folder.name
    if not re.match(NAME_PATTERN, skill.name):
        skill.problems.append(f"{folder / SKILL_FILE}: line 2: no `name:`, and the folder name {folder.name!r} is not a skill name")
    skill.description, skill.instructions, skill.risk = meta.description, body.strip(), meta.risk
    skill.phrases, skill.slots, skill.requires, skill.notes = meta.phrases, meta.slots, meta.requires, notes
    skill.sentences = meta.sentences
    missing = [m for m in meta.requires if not _importable(m)]
    if missing:
        skill.problems.append(f"{folder / SKILL_FILE}: needs the Python module {missing[0]!r}, which is not installed")
    return skill


def _check_trust(skill: Skill, trust: TrustStore | None) -> None:
    """Bundled skills come with the package; a user skill needs a person's approval."""
    if skill.bundled:
        skill.trusted = True
        return
    try:
        skill.refusal = trust.refusal(skill.name, skill.files) if trust else "no home folder to keep trust in"
    except TrustError as exc:
        skill.refusal = str(exc)
    skill.trusted = skill.refusal is None


def _decide(skill: Skill, chosen: bool) -> None:
    """Set skill.enabled and skill.status: broken, then the config's choice, then trust."""
    if skill.problems:
        skill.status = "broken: " + skill.problems[0]
    elif not chosen:
        skill.status = "disabled in config (skills.enabled / skills.disabled)"
    elif not skill.trusted:
        skill.status = f"not trusted ({skill.refusal}); run `agentd skills trust {skill.name}`"
    else:
        skill.enabled, skill.status = True, "enabled"


def _load_tools(skill: Skill) -> None:
    """Import tools.py as its own package module; a failure names the file and line."""
    path = skill.path / TOOLS_FILE
    if not path.is_file():
        return
    package = _MODULE_PREFIX + skill.name.replace("-", "_")
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]  # a reload must run the new code, helpers included
    parent = types.ModuleType(package)
    parent.__path__ = [str(skill.path)]  # lets tools.py import its neighbours: `from . import x`
    sys.modules[package] = parent
    try:
        spec = importlib.util.spec_from_file_location(f"{package}.tools", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        tools = tools_in(module)
    except Exception as exc:  # anything a third-party file can raise must not stop agentd
        skill.problems.append(_where(exc, path))
        skill.enabled, skill.status = False, "broken: " + skill.problems[-1]
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
        return
    names = [t.name for t in tools]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        skill.problems.append(f"{path}: two tools are named {twice!r}")
        skill.enabled, skill.status = False, "broken: " + skill.problems[-1]
        return
    if not tools:
        skill.notes.append(f"{path}: defines no @tool functions")
    floor = RISK_TIERS.index(skill.risk) if skill.risk else 0
    # `risk:` in SKILL.md is a floor: a person can make every tool of a skill ask first.
    skill.tools = [t if RISK_TIERS.index(t.risk) >= floor else _with_risk(t, RISK_TIERS[floor]) for t in tools]


def _with_risk(tool: Tool, risk: str) -> Tool:
    return Tool(**{**tool.__dict__, "risk": risk})


def _where(exc: BaseException, path: Path) -> str:
    """`FILE: line N: what went wrong` for an error raised while importing a skill's file."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}: line {exc.lineno}: {type(exc).__name__}: {exc.msg}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).parent == path.parent]
    where = f"{frames[-1].filename}: line {frames[-1].lineno}" if frames else str(path)
    return f"{where}: {type(exc).__name__}: {exc}"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def trust_skill(settings: Any, home: Path, name: str, *, bundled_dir: Path = BUNDLED_DIR) -> Skill:
    """Approve a user skill's current files; raise LookupError/ValueError when it cannot be."""
    skill = load_skills(settings, home, bundled_dir=bundled_dir).get(name)
    if skill is None:
        raise LookupError(f"no skill named {name!r} was found")
    if skill.bundled:
        raise ValueError(f"{name} is a bundled skill: it is trusted with agentd itself")
    TrustStore.in_home(home).trust(skill.name, skill.path, skill.files)
    return load_skills(settings, home, bundled_dir=bundled_dir).get(name)
