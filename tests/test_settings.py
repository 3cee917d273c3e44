"""Settings: the packaged defaults, merging a user's file, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest
import yaml

from agent.config.settings import (
    MODEL_PRESETS,
    ConfigError,
    SamplingSettings,
    Settings,
    default_config_path,
    default_settings,
    dump_effective,
    load_settings,
)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | str | None = None, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------------------- defaults


def test_defaults_load_with_the_documented_values():
    s = load_settings()
    assert s.model.path is None
    assert s.model.preset == "qwen3.5-4b" and s.model.preset in MODEL_PRESETS
    assert s.model.max_tokens == 1024
    assert s.model.thinking is False
    assert s.model.seed is None
    assert s.model.prefill_step_size == 2048
    assert s.agent.name == "agentd"
    assert (s.agent.max_model_calls, s.agent.max_repeated_calls) == (8, 3)
    assert s.agent.turn_timeout_s == 120
    assert s.agent.tool_output_max_chars == 4000
    assert s.agent.history_messages == 20
    assert s.agent.timezone is None and s.agent.tzinfo() is None
    assert s.logging.level == "info"
    assert s.logging.file_max_bytes > 0 and s.logging.file_backups >= 1


def test_default_sampling_is_qwen35s_recommendation_for_each_mode():
    model = load_settings().model
    common = dict(top_k=20, min_p=0.0, presence_penalty=1.5)
    plain = SamplingSettings(temperature=0.7, top_p=0.8, **common)
    thinking = SamplingSettings(temperature=1.0, top_p=0.95, **common)
    assert model.sampling() == plain  # thinking is off by default
    assert model.sampling(thinking=False) == plain
    assert model.sampling(thinking=True) == thinking == model.thinking_sampling


def test_system_prompt_is_static_text_without_a_clock():
    # The prompt is the start of the prefilled cache: a date or time in it would change daily.
    prompt = load_settings().agent.system_prompt
    assert prompt.strip()
    assert not re.search(r"\b(19|20)\d\d\b|\b\d{1,2}:\d\d\b|\{|\}", prompt)


def test_default_settings_is_cached_and_equal_to_a_fresh_load():
    assert default_settings() is default_settings()
    assert default_settings() == load_settings()


def test_default_config_lives_in_the_repository_config_folder():
    path = default_config_path()
    assert path.name == "default.yaml" and path.parent.name == "config"


def test_settings_are_immutable():
    s = load_settings()
    with pytest.raises(pydantic.ValidationError):
        s.model.max_tokens = 5  # type: ignore[misc]
    renamed = s.model_copy(update={"agent": s.agent.model_copy(update={"name": "x"})})
    assert renamed.agent.name == "x"


# ---------------------------------------------------------------------------- merging


def test_user_file_overrides_one_key_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: 256\n")
    s = load_settings(path)
    assert s.model.max_tokens == 256
    defaults = load_settings()
    assert s.model.model_copy(update={"max_tokens": 1024}) == defaults.model
    assert (s.agent, s.logging) == (defaults.agent, defaults.logging)


def test_user_file_overrides_one_nested_key(tmp_path):
    path = write(tmp_path, "model:\n  thinking_sampling:\n    temperature: 0.6\n")
    sampling = load_settings(path).model.thinking_sampling
    assert sampling.temperature == 0.6 and sampling.top_p == 0.95


@pytest.mark.parametrize("text", ["", "# nothing set yet\n", "model:\n#  max_tokens: 5\n"])
def test_empty_file_or_emptied_section_keeps_defaults(tmp_path, text):
    assert load_settings(write(tmp_path, text)) == load_settings()


def test_a_list_value_replaces_rather_than_merges(tmp_path):
    # Sections merge key by key; leaf values (here a bad list) replace and are then checked.
    message = config_error(write(tmp_path, "agent:\n  name: [a, b]\n"))
    assert message == f"{tmp_path / 'config.yaml'}: agent.name: expected text, got a list"


def test_overrides_win_over_the_user_file_and_skip_none(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: 256\n  path: ~/from-file\n")
    s = load_settings(path, overrides={"model.max_tokens": 64, "model": {"path": None}})
    assert s.model.max_tokens == 64
    assert s.model.path == Path("~/from-file").expanduser()  # None = flag not given


def test_overrides_accept_nested_form():
    s = load_settings(overrides={"model": {"thinking": True}, "logging": {"level": "debug"}})
    assert s.model.thinking is True and s.logging.level == "debug"
    assert s.model.sampling() == s.model.thinking_sampling


def test_model_path_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings(write(tmp_path, "model:\n  path: ~/models/qwen\n"))
    assert s.model.path == tmp_path / "models" / "qwen"


def test_choice_names_are_not_case_sensitive(tmp_path):
    s = load_settings(write(tmp_path, "logging:\n  level: WARNING\nmodel:\n  preset: Qwen3.5-9B\n"))
    assert (s.logging.level, s.model.preset) == ("warning", "qwen3.5-9b")


def test_valid_timezone_is_kept(tmp_path):
    s = load_settings(write(tmp_path, "agent:\n  timezone: Europe/Paris\n"))
    assert s.agent.timezone == "Europe/Paris" and str(s.agent.tzinfo()) == "Europe/Paris"


def test_integers_are_accepted_where_numbers_are_expected(tmp_path):
    s = load_settings(write(tmp_path, "model:\n  temperature: 1\nagent:\n  turn_timeout_s: 30\n"))
    assert s.model.temperature == 1.0 and s.agent.turn_timeout_s == 30.0


# ---------------------------------------------------------------------------- errors

BAD_VALUES = [
    ("model:\n  max_tokens: lots\n", "model.max_tokens: expected an integer, got 'lots'"),
    ("model:\n  max_tokens: '512'\n", "model.max_tokens: expected an integer, got '512'"),
    ("model:\n  max_tokens: 5.5\n", "model.max_tokens: expected an integer, got 5.5"),
    ("model:\n  max_tokens: 0\n", "model.max_tokens: expected at least 1, got 0"),
    ("model:\n  max_tokns: 5\n", "model.max_tokns: unknown key (did you mean 'max_tokens'?)"),
    ("modle:\n  max_tokens: 5\n", "modle: unknown key (did you mean 'model'?)"),
    (
        "model:\n  sampling:\n    temperature: 1\n",
        "model.sampling: unknown key (did you mean 'thinking_sampling'?)",
    ),
    (
        "model:\n  thinking_sampling:\n    temprature: 1\n",
        "model.thinking_sampling.temprature: unknown key (did you mean 'temperature'?)",
    ),
    # Sections are added as agentd grows, so the list of known keys comes from the model.
    ("weather:\n  city: Paris\n", f"weather: unknown key (known keys here: {', '.join(Settings.model_fields)})"),
    ("model:\n  thinking: maybe\n", "model.thinking: expected true or false, got 'maybe'"),
    ("model:\n  top_p: 1.5\n", "model.top_p: expected at most 1.0, got 1.5"),
    ("model:\n  seed: -1\n", "model.seed: expected at least 0, got -1"),
    (
        "model:\n  preset: qwen3.5-70b\n",
        "model.preset: expected one of 'qwen3.5-0.8b', 'qwen3.5-2b', 'qwen3.5-4b' or 'qwen3.5-9b', "
        "got 'qwen3.5-70b'",
    ),
    (
        "logging:\n  level: loud\n",
        "logging.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'",
    ),
    (
        "agent:\n  timezone: Mars/Olympus\n",
        "agent.timezone: expected an IANA time zone name such as 'Europe/Paris', "
        "got 'Mars/Olympus'",
    ),
    ("agent:\n  timezone: 5\n", "agent.timezone: expected text, got 5"),
    ("agent:\n  turn_timeout_s: true\n", "agent.turn_timeout_s: expected a number, got true"),
    ("agent:\n  max_repeated_calls: 1\n", "agent.max_repeated_calls: expected at least 2, got 1"),
    ("agent:\n  name: ''\n", "agent.name: expected non-empty text, got ''"),
    ("model: fast\n", "model: expected a mapping of settings, got 'fast'"),
    (
        "model:\n  thinking_sampling: [1, 2]\n",
        "model.thinking_sampling: expected a mapping of settings, got a list",
    ),
    ("model:\n  path: ''\n", "model.path: expected a model folder path or null, got ''"),
]


@pytest.mark.parametrize("count, budget", [(4, 512), (0, 0)])
def test_the_old_conversation_count_still_starts_with_a_warning(tmp_path, caplog, count, budget):
    # The first conversation cache was sized by a count; a config written then must not stop the daemon.
    settings = load_settings(write(tmp_path, f"model:\n  conversation_cache: {count}\n"))
    assert settings.model.conversation_cache_mb == budget
    assert "replaced by conversation_cache_mb" in caplog.text


@pytest.mark.parametrize("text, expected", BAD_VALUES, ids=[e.split(":")[0] for _, e in BAD_VALUES])
def test_bad_value_names_the_file_and_key_path(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert config_error(path) == f"{path}: {expected}"


def test_every_problem_gets_its_own_line(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: lots\nagent:\n  timezone: Nowhere/Town\n")
    lines = config_error(path).splitlines()
    assert lines == [
        f"{path}: model.max_tokens: expected an integer, got 'lots'",
        f"{path}: agent.timezone: expected an IANA time zone name such as 'Europe/Paris', "
        "got 'Nowhere/Town'",
    ]


def test_bad_override_is_blamed_on_the_overrides(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: 256\n")
    message = config_error(path, overrides={"model.max_tokens": "many"})
    assert message == "overrides: model.max_tokens: expected an integer, got 'many'"


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: 5\n  thinking: [true\nagent:\n  name: x\n")
    message = config_error(path)
    assert message.startswith(f"{path}: line ")
    assert "YAML syntax error: " in message
    assert re.search(r": line [345]: ", message)


def test_tab_indentation_is_a_syntax_error_on_its_line(tmp_path):
    path = write(tmp_path, "model:\n\tmax_tokens: 5\n")
    message = config_error(path)
    assert message.startswith(f"{path}: line 2: YAML syntax error: ")
    assert "'\\t'" in message


def test_duplicate_key_is_an_error_with_its_line(tmp_path):
    path = write(tmp_path, "model:\n  max_tokens: 5\n  max_tokens: 6\n")
    assert config_error(path) == f"{path}: line 3: duplicate key 'max_tokens'"


def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "config.yaml"
    assert config_error(missing) == f"config file not found: {missing}"


def test_folder_instead_of_file(tmp_path):
    assert config_error(tmp_path) == f"{tmp_path}: is a folder, not a config file"


def test_non_utf8_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"agent:\n  name: caf\xe9\n")
    assert config_error(path) == f"{path}: line 2: not UTF-8 text"


TOP_LEVELS = [("- model\n- agent\n", "a list"), ("just words\n", "'just words'"), ("42\n", "42")]


@pytest.mark.parametrize("text, got", TOP_LEVELS)
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    path = write(tmp_path, text)
    assert config_error(path) == (
        f"{path}: expected a mapping of sections (like 'model:') at the top level, got {got}"
    )


def test_non_text_key(tmp_path):
    path = write(tmp_path, "1: x\n")
    assert config_error(path) == f"{path}: 1: keys must be names (text), got 1"


def test_config_error_is_a_value_error_without_a_chained_traceback(tmp_path):
    with pytest.raises(ValueError) as caught:
        load_settings(write(tmp_path, "model:\n  max_tokens: lots\n"))
    assert isinstance(caught.value, ConfigError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "Traceback" not in str(caught.value) and "pydantic" not in str(caught.value)


# ---------------------------------------------------------------------------- dumping


def test_dump_effective_round_trips(tmp_path):
    text = "agent:\n  timezone: Asia/Tokyo\nmodel:\n  path: /m/q\n  seed: 7\n"
    s = load_settings(write(tmp_path, text))
    dumped = dump_effective(s)
    assert "system_prompt: |" in dumped  # multi-line text stays readable
    assert list(yaml.safe_load(dumped)) == list(Settings.model_fields)
    assert load_settings(write(tmp_path, dumped, "dumped.yaml")) == s


# ---------------------------------------------------------------------------- documentation


def _model_paths(section: type[pydantic.BaseModel], prefix: tuple = ()) -> list[tuple]:
    paths = []
    for name, field in section.model_fields.items():
        paths.append(prefix + (name,))
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, pydantic.BaseModel):
            paths.extend(_model_paths(nested, prefix + (name,)))
    return paths


def _yaml_keys(node: yaml.MappingNode, prefix: tuple = ()) -> dict[tuple, int]:
    """Every key path in the file, with the 0-based line its key is on."""
    keys = {}
    for key_node, value_node in node.value:
        path = prefix + (key_node.value,)
        keys[path] = key_node.start_mark.line
        if isinstance(value_node, yaml.MappingNode):
            keys.update(_yaml_keys(value_node, path))
    return keys


def test_default_yaml_has_exactly_the_models_keys():
    keys = _yaml_keys(yaml.compose(default_config_path().read_text(encoding="utf-8")))
    assert sorted(keys) == sorted(_model_paths(Settings))


def test_every_key_in_default_yaml_has_a_comment():
    text = default_config_path().read_text(encoding="utf-8")
    lines = text.splitlines()
    keys = _yaml_keys(yaml.compose(text))
    uncommented = [
        ".".join(path)
        for path, line in keys.items()
        if not (line > 0 and lines[line - 1].strip().startswith("#")) and "#" not in lines[line]
    ]
    assert uncommented == []
    for path in _model_paths(Settings):
        assert path in keys, f"{'.'.join(path)} is missing from default.yaml"
