"""Eval cases: a YAML file of utterances and the tool calls (or none) they should lead to.

    home: home.yaml            # the sample home (devices, their states), relative to this file
    skills: [home, kitchen]    # the skills in play (a case may name its own)
    cases:
      - id: kitchen-light-on
        category: lights
        say: turn on the kitchen light
        expect: {tool: set_device, args: {device: kitchen light, state: on}}
      - id: joke
        category: chitchat
        say: tell me a joke
        expect: none

An expectation is one call (`tool` + `args`, `match: subset` by default or `exact`), several
calls (`calls: [...]`, any order), or `none`; `allow` names tools that may also be called
(reading a device before changing it). An argument is a value, or a matcher: `{one_of: [..]}`,
`{contains: text or [texts]}`, `{regex: ...}`. A broken file is a CaseFileError naming the
file, the case id and the key; never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The product's cases live with the package (package data), so a wheel has them too.
DEFAULT_CASES = Path(__file__).resolve().parent / "data" / "cases.yaml"


class CaseFileError(ValueError):
    """A case file cannot be read or is not valid; the message names file, case and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Matcher(_Strict):
    """A looser test of one argument than equality."""

    one_of: list[Any] | None = None
    contains: str | list[str] | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Matcher":
        given = [k for k in ("one_of", "contains", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an argument matcher needs exactly one of one_of, contains, regex (got {', '.join(given) or 'none'})")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"bad regex {self.regex!r}: {exc}") from None
        return self


ArgValue = Matcher | str | bool | int | float | None


class CallSpec(_Strict):
    """One expected tool call."""

    tool: str = Field(min_length=1)
    args: dict[str, ArgValue] = {}
    match: Literal["subset", "exact"] = "subset"


class Expect(_Strict):
    """What a case should lead to: one call, several calls, or no call at all."""

    tool: str | None = None
    args: dict[str, ArgValue] = {}
    match: Literal["subset", "exact"] = "subset"
    calls: list[CallSpec] | None = None
    none: bool = False
    allow: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"none": True} if value in ("none", None) else value

    @model_validator(mode="after")
    def _one_kind(self) -> "Expect":
        kinds = [k for k, on in (("tool", self.tool is not None), ("calls", self.calls is not None), ("none", self.none)) if on]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of tool, calls or none (got {', '.join(kinds) or 'none of them'})")
        if self.tool is None and self.args:
            raise ValueError("args belong to tool (or to each entry of calls)")
        if self.calls is not None and not self.calls:
            raise ValueError("calls is empty: use `expect: none` for no tool call")
        return self

    def expected_calls(self) -> list[CallSpec]:
        """The calls this expectation wants ([] for none)."""
        if self.tool is not None:
            return [CallSpec(tool=self.tool, args=self.args, match=self.match)]
        return list(self.calls or [])


class Turn(_Strict):
    """One earlier message of a short conversation."""

    user: str | None = None
    assistant: str | None = None

    @model_validator(mode="after")
    def _one_role(self) -> "Turn":
        if (self.user is None) == (self.assistant is None):
            raise ValueError("each conversation entry is either `user: ...` or `assistant: ...`")
        return self

    def message(self) -> dict:
        return {"role": "user", "content": self.user} if self.user is not None else {"role": "assistant", "content": self.assistant}


class Case(_Strict):
    """One utterance (after an optional short conversation) and its expected outcome."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    category: str = "general"
    say: str = Field(min_length=1)
    conversation: list[Turn] = []
    expect: Expect
    states: dict[str, str] = {}  # device name -> state before the case ("locked", "21.5")
    memory: list[str] = []  # facts in long-term memory before the case
    skills: list[str] | None = None  # None: the file's skills

    @field_validator("states", mode="before")
    @classmethod
    def _text_states(cls, value: Any) -> Any:
        if isinstance(value, dict):  # 21.5 or 40 read as numbers; a state is text
            return {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in value.items()}
        return value


class CaseFile(_Strict):
    """A whole case file."""

    home: str | None = None
    skills: list[str] | None = None  # None: the skills the config enables
    allow: list[str] = []  # tools every case that expects a call may also call
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "CaseFile":
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"two cases have the id {case.id!r}")
            seen.add(case.id)
        return self

    def effective_cases(self) -> list[Case]:
        """The cases with the file's `allow` added to each one that expects a call."""
        if not self.allow:
            return list(self.cases)
        out = []
        for case in self.cases:
            if not case.expect.none:
                allow = list(dict.fromkeys([*case.expect.allow, *self.allow]))
                case = case.model_copy(update={"expect": case.expect.model_copy(update={"allow": allow})})
            out.append(case)
        return out


class LoadedCases(BaseModel):
    """A validated case file with its resolved home file."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    file: CaseFile
    home_path: Path | None

    @property
    def cases(self) -> list[Case]:
        return self.file.effective_cases()

    def skills_for(self, case: Case) -> list[str] | None:
        return case.skills if case.skills is not None else self.file.skills


# ---------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader where on/off/yes/no stay text (`state: on` is "on") and duplicate keys fail."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(path: Path) -> Any:
    """A YAML file with the eval's loader; CaseFileError with the line on a syntax error."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CaseFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read it ({exc})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise CaseFileError(f"{path}: {where}YAML error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise CaseFileError(f"{path}: YAML error: {exc}") from None


def load_cases(path: Path | str) -> LoadedCases:
    """Read and validate a case file."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CaseFileError(f"{path}: expected a mapping with `cases:` at the top level")
    try:
        file = CaseFile.model_validate(data)
    except ValidationError as exc:
        raise CaseFileError(explain(path, exc, data)) from None
    home = (path.parent / file.home).resolve() if file.home else None
    if home is not None and not home.is_file():
        raise CaseFileError(f"{path}: home: no such file {str(home)!r}")
    return LoadedCases(path=path, file=file, home_path=home)


_BRANCHES = {"Matcher", "CallSpec", "Expect", "Turn", "Case", "str", "bool", "int", "float", "none"}
_VALUE_BRANCHES = {"str", "bool", "int", "float", "none"}


def explain(path: Path, exc: ValidationError, data: Any) -> str:
    """One line per problem: `<file>: case '<id>': <key.path>: <why>`."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # An argument is a value or a matcher: a mapping is judged as a matcher, anything else
        # as a value, said once rather than once per type it is not.
        tag = next((i for i, p in enumerate(loc) if isinstance(p, str) and ("Matcher" in p or p in _VALUE_BRANCHES)), None)
        if tag is not None:
            inside_matcher = "Matcher" in loc[tag] and tag < len(loc) - 1  # a matcher's own field failed
            as_matcher = inside_matcher or isinstance(err.get("input"), dict)
            if as_matcher != ("Matcher" in loc[tag]) or (not as_matcher and loc[tag] != "str"):
                continue
            if not as_matcher:
                err = {**err, "type": "value", "msg": "expected text, a number, true/false or a matcher ({one_of: [...]}, {contains: ...}, {regex: ...})"}
        where = ""
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            raw = data.get("cases") or []
            case_id = raw[loc[1]].get("id") if loc[1] < len(raw) and isinstance(raw[loc[1]], dict) else None
            where = f"case {case_id!r}: " if case_id else f"case #{loc[1] + 1}: "
            loc = loc[2:]
        # pydantic names union branches in the path (Matcher, str, ...); they are not keys
        key = ".".join(str(p) for p in loc if not (isinstance(p, str) and (p in _BRANCHES or "[" in p))) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        line = f"{path}: {where}{key}: {message}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- checking


def check_cases(loaded: LoadedCases, registry_for: Any, device_names: Any = None) -> list[str]:
    """Problems with expectations that name tools, arguments or devices that do not exist.

    `registry_for(skills)` gives the tool registry for a skill list; `device_names(name)` says
    whether a device name finds something in the home (None: not checked).
    """
    problems = []
    for case in loaded.cases:
        registry = registry_for(tuple(loaded.skills_for(case) or ()))
        where = f"{loaded.path}: case {case.id!r}"
        for i, spec in enumerate(case.expect.expected_calls()):
            key = "expect" if case.expect.tool else f"expect.calls.{i}"
            problems += _check_call(where, key, spec.tool, spec.args, registry, device_names)
        for name in case.expect.allow:
            if registry.get(name) is None:
                problems.append(f"{where}: expect.allow: there is no tool {name!r}")
        if device_names is not None:
            for device in case.states:
                problem = device_names(device)
                if problem:
                    problems.append(f"{where}: states.{device}: {problem}")
    return problems


def _check_call(where: str, key: str, tool_name: str, args: dict, registry: Any, device_names: Any) -> list[str]:
    tool = registry.get(tool_name)
    if tool is None:
        return [f"{where}: {key}.tool: there is no tool {tool_name!r} (tools: {', '.join(registry.names())})"]
    problems = []
    known = tool.arguments_model.model_fields
    plain = {}
    for name, value in args.items():
        if name not in known:
            problems.append(f"{where}: {key}.args.{name}: {tool_name} has no argument {name!r} (it has: {', '.join(known)})")
        elif not isinstance(value, Matcher):
            plain[name] = value
    if not problems:
        try:  # the expected values must be ones the tool accepts, or no call could match
            tool.arguments_model.model_validate({**_placeholders(tool, plain), **plain})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                arg = ".".join(str(p) for p in err["loc"])
                problems.append(f"{where}: {key}.args.{arg}: {err['msg']} (got {err.get('input')!r})")
    if device_names is not None and isinstance(args.get("device"), str):
        problem = device_names(args["device"])
        if problem:
            problems.append(f"{where}: {key}.args.device: {problem}")
    return problems


def _placeholders(tool: Any, given: dict) -> dict:
    """Values for required arguments a subset expectation leaves out (only types are checked)."""
    samples = {str: "x", int: 1, float: 1.0, bool: True}
    out = {}
    for name, field in tool.arguments_model.model_fields.items():
        if name not in given and field.is_required():
            out[name] = samples.get(field.annotation, "x")
    return out
