"""Settings: config/default.yaml, merged with the user's YAML file key by key, then validated.

config/default.yaml is the one place where defaults are written down; the models below give
their types and limits, so every field is required and the YAML must name it. An error never
shows a traceback: `ConfigError` says which file, which key path and what was expected.

Adding a section: write a model below (subclass `_Section`), add it as a field of `Settings`,
and add its block to config/default.yaml with a comment on every key (a test checks).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from agent.home_control.config import HomeSettings
from agent.mcp.config import McpServerSettings, check_server_name

Preset = Literal["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]
MODEL_PRESETS: tuple[str, ...] = get_args(Preset)
LogLevel = Literal["debug", "info", "warning", "error"]

# Sampling limits shared by the flat non-thinking keys of `model` and `model.thinking_sampling`.
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
TopK = Annotated[int, Field(ge=0)]
MinP = Annotated[float, Field(ge=0.0, le=1.0)]
PresencePenalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class ConfigError(ValueError):
    """A config file cannot be read, parsed or validated; the message says where and why."""


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors, types are not coerced."""

    # strict: YAML already gives real ints/floats/bools, so "lots" or "yes" in an int field
    # is a mistake to report, not something to guess at.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _lowercase(value: Any) -> Any:
    """Accept "INFO" for "info": names of choices are not case-sensitive."""
    return value.lower() if isinstance(value, str) else value


class SamplingSettings(_Section):
    """Token sampling parameters (mlx-lm's sampler and logits processors take these)."""

    temperature: Temperature
    top_p: TopP
    top_k: TopK
    min_p: MinP
    presence_penalty: PresencePenalty


class RemoteEngineSettings(_Section):
    """An OpenAI-compatible model server on another machine (`model.backend: openai`)."""

    base_url: str | None
    model: str | None
    api_key_env: str | None
    timeout_s: float = Field(gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// address such as 'http://studio.local:8080/v1', got {value!r}")
        return value.rstrip("/") if value else value


class ModelSettings(_Section):
    """Which model runs and how it samples."""

    backend: Literal["mlx", "openai"]
    remote: RemoteEngineSettings
    # Strict(False): a path arrives from YAML as text and should become a Path.
    path: Annotated[Path, Strict(False)] | None
    preset: Preset
    max_tokens: int = Field(ge=1)
    thinking: bool
    temperature: Temperature
    top_p: TopP
    top_k: TopK
    min_p: MinP
    presence_penalty: PresencePenalty
    thinking_sampling: SamplingSettings
    seed: int | None = Field(ge=0)
    prefill_step_size: int = Field(ge=1)
    conversation_cache_mb: int = Field(ge=0)
    constrained: bool
    thinking_budget: int | None = Field(ge=1)
    context_window: int | None = Field(ge=64)
    demo_cpu_tools: list[str]

    @model_validator(mode="before")
    @classmethod
    def _count_became_a_budget(cls, data: Any) -> Any:
        # The first conversation cache was sized by a count of conversations; their sizes
        # differ by 100x, so a count bounded nothing a person could plan memory by. An old
        # config still starts: 0 keeps the cache off, any other count takes the default budget.
        if isinstance(data, dict) and "conversation_cache" in data:
            data = dict(data)
            count = data.pop("conversation_cache")
            if count == 0:
                data["conversation_cache_mb"] = 0
            logging.getLogger(__name__).warning(
                "model.conversation_cache: %r (a count of conversations) was replaced by conversation_cache_mb, "
                "the memory the conversation cache may use in MB; using conversation_cache_mb: %s. "
                "Write that in your config instead.", count, data.get("conversation_cache_mb", "its default"))
        return data

    @field_validator("preset", "backend", mode="before")
    @classmethod
    def _lower_preset(cls, value: Any) -> Any:
        return _lowercase(value)

    @model_validator(mode="after")
    def _remote_named(self) -> "ModelSettings":
        if self.backend == "openai" and not self.remote.base_url:
            raise ValueError("backend is openai but remote.base_url is not set: name the server, e.g. http://studio.local:8080/v1")
        return self

    @field_validator("path", mode="before")
    @classmethod
    def _no_empty_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"expected a model folder path or null, got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    def sampling(self, thinking: bool | None = None) -> SamplingSettings:
        """The sampling values for a turn: thinking_sampling when thinking, else the flat keys."""
        if self.thinking if thinking is None else thinking:
            return self.thinking_sampling
        names = SamplingSettings.model_fields
        return SamplingSettings(**{name: getattr(self, name) for name in names})


class AgentSettings(_Section):
    """The agent's instructions and the guards on one turn."""

    name: str = Field(min_length=1)
    system_prompt: str = Field(min_length=1)
    max_model_calls: int = Field(ge=1)
    max_repeated_calls: int = Field(ge=2)
    turn_timeout_s: float = Field(gt=0)
    tool_output_max_chars: int = Field(ge=1)
    tool_timeout_s: float = Field(gt=0)
    history_messages: int = Field(ge=0)
    timezone: str | None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"expected an IANA time zone name such as 'Europe/Paris', got {value!r}"
                ) from None
        return value

    def tzinfo(self) -> ZoneInfo | None:
        """The configured time zone, or None for the machine's own."""
        return ZoneInfo(self.timezone) if self.timezone else None


class LoggingSettings(_Section):
    """Log level and log-file rotation."""

    level: LogLevel
    file_max_bytes: int = Field(ge=0)
    file_backups: int = Field(ge=0)

    @field_validator("level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return _lowercase(value)


class DaemonSettings(_Section):
    """How the daemon treats its clients."""

    confirm_timeout_s: float = Field(gt=0)
    cancel_grace_s: float = Field(gt=0)


class ApiSettings(_Section):
    """The HTTP API for other programs (OpenAI- and Ollama-compatible); off by default."""

    enabled: bool
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    model_name: str = Field(min_length=1)
    token_file: Annotated[Path, Strict(False)]
    allow: list[str]
    max_request_bytes: int = Field(gt=0)


class ScheduleSettings(_Section):
    """The schedule (apscheduler): how late runs are treated and how often it looks around."""

    misfire_grace_s: float = Field(gt=0)
    reminder_grace_s: float = Field(gt=0)
    coalesce: bool
    poll_s: float = Field(gt=0)
    sleep_jump_s: float = Field(gt=0)


class SkillsSettings(_Section):
    """Where skills are found besides the bundled ones, and which are switched on."""

    # Strict(False): folders arrive from YAML as text and should become Paths.
    paths: list[Annotated[Path, Strict(False)]]
    enabled: list[str] | None
    disabled: list[str]


class IntentsSettings(_Section):
    """The fast phrase path (agent.skills.intents)."""

    enabled: bool


class VoiceSettings(_Section):
    """The microphone door (agent.voice): listening, wake phrase, speech to text, spoken replies."""

    enabled: bool
    input_device: str | int | None
    output_device: str | int | None
    wake_mode: Literal["phrase", "push", "always"]
    wake_phrases: list[str] = Field(min_length=1)
    wake_similarity: float = Field(gt=0.0, le=1.0)
    wake_window_s: float = Field(ge=0)
    follow_up_s: float = Field(ge=0)
    confirm_window_s: float = Field(gt=0)
    vad_threshold: float = Field(gt=0.0, lt=1.0)
    end_silence_ms: int = Field(ge=32)
    min_speech_ms: int = Field(ge=0)
    max_utterance_s: float = Field(gt=0)
    stt_model: str | None
    stt_compute_type: str = Field(min_length=1)
    stt_threads: int = Field(ge=0)
    stt_beam_size: int = Field(ge=1)
    stt_temperature_fallback: bool
    stt_language: str | None
    stt_hints: bool
    min_avg_logprob: float = Field(le=0.0)
    max_no_speech_prob: float = Field(ge=0.0, le=1.0)
    max_compression_ratio: float = Field(gt=0.0)
    ignore_phrases: list[str]
    tts: Literal["auto", "say", "espeak-ng", "none"]
    tts_voice: str | None
    tts_rate: int | None = Field(ge=50, le=600)
    retry_max_s: float = Field(gt=0)


class WyomingSettings(_Section):
    """Home Assistant's Wyoming protocol (agent.wyoming): speech to text, speech, and the agent."""

    enabled: bool
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    allow_confirm: list[str]
    zeroconf: bool


class VisionSettings(_Section):
    """Images for the model (the vision extra): how big they may be."""

    max_pixels: int = Field(ge=4096)
    max_image_bytes: int = Field(gt=0)
    answer_max_tokens: int = Field(ge=1)


class Settings(_Section):
    """All of agentd's settings (the root of config/default.yaml)."""

    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    model: ModelSettings
    agent: AgentSettings
    daemon: DaemonSettings
    api: ApiSettings
    logging: LoggingSettings
    schedule: ScheduleSettings
    skills: SkillsSettings
    intents: IntentsSettings
    voice: VoiceSettings
    wyoming: WyomingSettings
    vision: VisionSettings
    home: HomeSettings
    mcp_servers: dict[str, McpServerSettings]
    # Each automation is checked on its own by agent.schedule, so one bad entry is
    # reported by its id while the rest still load.
    automations: list[Any]

    @model_validator(mode="before")
    @classmethod
    def _follow_language(cls, data: Any) -> Any:
        """The voice settings left null follow `language`: Whisper's language, the wake phrases."""
        voice = data.get("voice") if isinstance(data, dict) else None
        code = data.get("language") if isinstance(data, dict) else None
        if not isinstance(voice, dict) or not isinstance(code, str):
            return data  # the field checks report what is missing or wrong
        from agent.languages import language, primary

        voice = dict(voice)
        if voice.get("stt_language", ...) is None:
            voice["stt_language"] = primary(code)
        if voice.get("wake_phrases", ...) is None:
            voice["wake_phrases"] = list(language(code).wake_phrases)
        return {**data, "voice": voice}

    @model_validator(mode="after")
    def _a_request_holds_a_picture(self) -> "Settings":
        """The API must take one picture of the largest size vision accepts (base64: a third more)."""
        picture = -(-self.vision.max_image_bytes * 4 // 3)
        if self.api.max_request_bytes < picture:
            raise ValueError(f"api.max_request_bytes ({self.api.max_request_bytes}) is smaller than one picture of "
                             f"vision.max_image_bytes ({self.vision.max_image_bytes}) sent as base64 ({picture} bytes); "
                             "raise api.max_request_bytes or lower vision.max_image_bytes")
        return self

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _mcp_names(cls, value: Any) -> Any:
        if value is None:
            return {}  # "mcp_servers:" with every entry commented out
        for name in value if isinstance(value, dict) else ():
            check_server_name(str(name))
        return value

    @field_validator("automations", mode="before")
    @classmethod
    def _no_automations(cls, value: Any) -> Any:
        return [] if value is None else value  # "automations:" with every entry commented out


# ---------------------------------------------------------------------------- loading

def default_config_path() -> Path:
    """Where the packaged config/default.yaml is (the checkout's config/, or inside a wheel)."""
    from agent.bundled import bundled_dir

    path = bundled_dir("config") / "default.yaml"
    if not path.is_file():
        raise ConfigError(f"agentd's default config is missing ({path}): reinstall agentd")
    return path


def load_settings(
    user_path: Path | str | None = None, *, overrides: dict | None = None
) -> Settings:
    """Defaults, then the user's file, then overrides (None values skipped), validated."""
    default_path = default_config_path()
    sources = [(str(default_path), _read_yaml(default_path))]
    if user_path is not None:
        sources.append((str(user_path), _read_yaml(Path(user_path))))
    if overrides:
        sources.append(("overrides", _expand_overrides(overrides)))
    merged: dict = {}
    for _, data in sources:
        merged = _merge(merged, data)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_explain(error, sources)) from None
    _check_speech_language(settings)
    return settings


def _check_speech_language(settings: Settings) -> None:
    """An English-only Whisper with another language is an error once something will listen
    (the voice door or Wyoming); `agentd listen` finds it when the model loads."""
    from agent.languages import english_only, speech_mismatch

    voice = settings.voice
    if (voice.enabled or settings.wyoming.enabled) and english_only(voice.stt_model):
        problem = speech_mismatch(voice.stt_model, voice.stt_language, settings.language)
        if problem:
            raise ConfigError(problem)


def settings_or_defaults(user_path: Path | str | None = None, *, overrides: dict | None = None) -> tuple[Settings, str | None]:
    """The settings, or the defaults and what is wrong with the file: for commands that only
    read a setting or two and must keep working while config.yaml has a typo."""
    try:
        return load_settings(user_path, overrides=overrides), None
    except ConfigError as exc:
        return default_settings(), str(exc)


@functools.lru_cache(maxsize=1)
def default_settings() -> Settings:
    """The packaged defaults alone (cached; Settings is immutable, so sharing it is safe)."""
    return load_settings()


class _DuplicateKey(yaml.constructor.ConstructorError):
    """The same key twice in one mapping."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would silently let the last win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict:
    """One config file as a mapping (an empty file is an empty mapping)."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a folder, not a config file") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{label}: line {line}: not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        raise ConfigError(_explain_yaml(label, error)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{label}: YAML syntax error: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: expected a mapping of sections (like 'model:') at the top level, "
            f"got {_describe(data)}"
        )
    return data


def _explain_yaml(label: str, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}: " if mark else ""
    if isinstance(error, _DuplicateKey):
        return f"{label}: {where}{error.problem}"
    problem = error.problem or error.context or "cannot parse"
    column = f" (column {mark.column + 1})" if mark else ""
    return f"{label}: {where}YAML syntax error: {problem}{column}"


def _expand_overrides(overrides: dict) -> dict:
    """Turn {"model.path": x} or {"model": {"path": x}} into nested form, dropping None values."""
    # None means "flag not given", so a CLI can pass every flag without undoing the user's file.
    nested: dict = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = _expand_overrides(value)
        for part in reversed(str(key).split(".")):
            value = {part: value}
        nested = _merge(nested, value)
    return nested


def _merge(base: dict, top: dict) -> dict:
    """Deep-merge top into base: mappings merge key by key; anything else replaces."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = _merge(below, value)
        elif isinstance(below, dict) and value is None:
            continue  # "model:" with every key under it commented out means "no changes"
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------------- errors

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected text",
    "path_type": "expected a path",
    "model_type": "expected a mapping of settings",
    "dict_type": "expected a mapping of settings",
    "list_type": "expected a list",
    "string_too_short": "expected non-empty text",
}
_BOUNDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


def _explain(error: ValidationError, sources: list[tuple[str, dict]]) -> str:
    """One line per problem: `<file>: <key.path>: <what was expected>, got <value>`."""
    lines: list[str] = []
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        line = f"{_source_of(loc, sources)}: {_dotted(loc)}: {_reason(detail)}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _reason(detail: dict) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    got = f", got {_describe(value)}"
    if kind == "extra_forbidden":
        return _unknown_key(detail["loc"])
    if kind == "invalid_key":
        return f"keys must be names (text), got {_describe(value)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"expected one of {ctx['expected']}{got}"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    for bound, words in _BOUNDS.items():
        if bound in ctx and kind.startswith(("greater", "less")):
            return f"expected {words} {ctx[bound]}{got}"
    return _EXPECTED.get(kind, detail["msg"]) + got


def _unknown_key(loc: tuple) -> str:
    known = _fields_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known keys here: {', '.join(known)})"


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the section at loc (Settings itself for an empty loc)."""
    section: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of sections (home.devices.0): its type is the list's
        annotation = section.model_fields[part].annotation
        candidates = (annotation, *get_args(annotation))
        section = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return list(section.model_fields)


def _source_of(loc: tuple, sources: list[tuple[str, dict]]) -> str:
    """The label of the last source that set the value at loc (or most of the way to it)."""
    # A missing key (home.devices.0.name) is blamed on the file that wrote the entry around it.
    best, best_depth = sources[0][0], -1
    for label, data in sources:
        node: Any = data
        depth = 0
        for part in loc:
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                break
            depth += 1
        if depth >= best_depth:
            best, best_depth = label, depth
    return best


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe(value: Any) -> str:
    """A short, YAML-flavoured rendering of a bad value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- dumping


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text (the system prompt) as a readable `|` block."""

    def represent_str(self, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return self.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)


def dump_effective(settings: Settings) -> str:
    """The merged settings as YAML, in config/default.yaml's order (for `agentd doctor`)."""
    data = settings.model_dump(mode="json")
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
