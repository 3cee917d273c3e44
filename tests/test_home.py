"""The home folder: where it is, that it is created private, and the paths inside it."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import platformdirs
import pytest

from agent.config.paths import (
    HOME_ENV,
    HomeError,
    log_dir,
    models_dir,
    resolve_home,
    select_user_config,
    socket_path,
    user_config_path,
)
from agent.config.settings import load_settings

NOBODY = 65534


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """Point the platform user-data folder into tmp_path (never touch the real one)."""
    calls = []

    def fake_user_data_dir(appname=None, appauthor=None, *args, **kwargs):
        calls.append(appname)
        return str(tmp_path / "platform" / appname)

    monkeypatch.setattr(platformdirs, "user_data_dir", fake_user_data_dir)
    monkeypatch.delenv(HOME_ENV, raising=False)
    return tmp_path / "platform" / "agentd", calls


@pytest.fixture
def umask_022():
    """A typical umask, so a plain mkdir would give 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------------------- where


def test_cli_value_wins_over_env(tmp_path, monkeypatch, user_data):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "from-env"))
    assert resolve_home(str(tmp_path / "from-cli")) == tmp_path / "from-cli"
    assert not (tmp_path / "from-env").exists()


def test_env_wins_over_the_platform_folder(tmp_path, monkeypatch, user_data):
    platform_home, calls = user_data
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "from-env"))
    assert resolve_home() == tmp_path / "from-env"
    assert calls == [] and not platform_home.exists()


def test_platform_user_data_folder_is_the_fallback(user_data):
    platform_home, calls = user_data
    assert resolve_home() == platform_home
    assert calls == ["agentd"]
    assert platform_home.is_dir()


def test_empty_env_and_cli_values_are_ignored(monkeypatch, user_data):
    platform_home, _ = user_data
    monkeypatch.setenv(HOME_ENV, "  ")
    assert resolve_home("") == platform_home


def test_relative_and_tilde_paths_become_absolute(tmp_path, monkeypatch, user_data):
    monkeypatch.chdir(tmp_path)
    assert resolve_home("rel/home") == tmp_path / "rel" / "home"
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert resolve_home("~/agentd") == tmp_path / "me" / "agentd"


# ---------------------------------------------------------------------------- permissions


def test_new_home_is_private_despite_the_umask(tmp_path, user_data, umask_022):
    home = resolve_home(str(tmp_path / "a" / "b" / "home"))
    assert home.is_dir()
    assert mode_of(home) == 0o700


def test_open_existing_home_is_tightened_and_logged(tmp_path, user_data, caplog):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="agent.config.paths"):
        resolve_home(str(home))
    assert mode_of(home) == 0o700
    assert "0755" in caplog.text and str(home) in caplog.text


def test_private_existing_home_is_left_alone(tmp_path, user_data, caplog):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    (home / "agentd.db").write_text("kept")
    with caplog.at_level(logging.WARNING, logger="agent.config.paths"):
        assert resolve_home(str(home)) == home
    assert mode_of(home) == 0o700 and caplog.text == ""
    assert (home / "agentd.db").read_text() == "kept"


def test_a_file_in_the_way_is_a_clear_error(tmp_path, user_data):
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    with pytest.raises(HomeError, match="is a file, not a folder") as caught:
        resolve_home(str(blocker))
    assert str(blocker) in str(caught.value) and "--home" in str(caught.value)


def test_a_home_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch, user_data):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "file" / "home"))
    with pytest.raises(OSError) as caught:
        resolve_home()
    assert isinstance(caught.value, HomeError)
    assert "cannot use home folder" in str(caught.value) and f"${HOME_ENV}" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder (the next test runs this case as nobody)")
def test_a_read_only_home_is_a_clear_error(tmp_path, user_data):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        with pytest.raises(HomeError, match="cannot use home folder"):
            resolve_home(str(home))
    finally:
        home.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user (the test above covers non-root)")
def test_a_read_only_home_is_a_clear_error_run_as_an_unprivileged_user():
    """The read-only case as root runs it: a forked child drops to `nobody`, for whom a folder
    it owns with mode 0500 is really read-only (no exec: the interpreter may sit in /root)."""
    shared = Path(tempfile.mkdtemp(prefix="ro-home-", dir="/tmp"))  # tmp_path is root-only
    try:
        shared.chmod(0o755)
        home = shared / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        home.chmod(0o500)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody, try the folder, report the error's text
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                try:
                    resolve_home(str(home))
                    message = "no error"
                except HomeError as error:
                    message = str(error)
                os.write(write, message.encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            message = pipe.read()
        os.waitpid(pid, 0)
        assert "cannot use home folder" in message and str(home) in message, message
    finally:
        shutil.rmtree(shared)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_another_users_folder_is_refused(tmp_path, user_data):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, 4321, 4321)
    with pytest.raises(HomeError, match="belongs to another user"):
        resolve_home(str(home))


# ---------------------------------------------------------------------------- paths inside


def test_standard_paths(tmp_path):
    assert models_dir(tmp_path) == tmp_path / "models"
    assert socket_path(tmp_path) == tmp_path / "agentd.sock"
    assert log_dir(tmp_path) == tmp_path / "logs"
    assert user_config_path(tmp_path) == tmp_path / "config.yaml"


def test_select_user_config(tmp_path):
    assert select_user_config(tmp_path) is None
    user_config_path(tmp_path).write_text("model:\n  max_tokens: 99\n")
    assert select_user_config(tmp_path) == tmp_path / "config.yaml"
    # --config wins, even before it exists (loading it then reports it missing).
    assert select_user_config(tmp_path, str(tmp_path / "other.yaml")) == tmp_path / "other.yaml"


def test_home_config_feeds_load_settings(tmp_path, user_data):
    home = resolve_home(str(tmp_path / "home"))
    user_config_path(home).write_text("model:\n  max_tokens: 99\n")
    assert load_settings(select_user_config(home)).model.max_tokens == 99
