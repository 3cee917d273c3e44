"""agentd's home folder: where its socket, database, logs, models and user config live.

The home is `--home DIR`, else `$AGENTD_HOME`, else the platform's user-data folder
(~/Library/Application Support/agentd on macOS, ~/.local/share/agentd on Linux). It holds the
control socket and the conversation history, so it is kept private to its owner (mode 0700).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

HOME_ENV = "AGENTD_HOME"
_PRIVATE = 0o700


class HomeError(OSError):
    """The home folder cannot be created, secured or written to."""


def resolve_home(cli_value: str | None = None) -> Path:
    """The home folder (--home, else $AGENTD_HOME, else the user-data folder), made ready."""
    home, source = _choose(cli_value)
    # absolute(), not resolve(): keep the path as the user wrote it (symlinks and all), but
    # independent of the working directory, since the daemon and its clients may differ.
    home = Path(home).expanduser().absolute()
    _prepare(home, source)
    return home


def _choose(cli_value: str | None) -> tuple[str, str]:
    if cli_value:
        return cli_value, "--home"
    from_env = os.environ.get(HOME_ENV, "").strip()
    if from_env:
        return from_env, f"${HOME_ENV}"
    return platformdirs.user_data_dir("agentd", appauthor=False), "the user-data folder"


def _prepare(home: Path, source: str) -> None:
    """Create the home with mode 0700, or tighten an existing one; check it is writable."""
    try:
        if home.exists() and not home.is_dir():
            raise HomeError(f"home folder {str(home)!r} (from {source}) is a file, not a folder")
        if not home.exists():
            home.mkdir(mode=_PRIVATE, parents=True)
            home.chmod(_PRIVATE)  # mkdir's mode is masked by the umask
        _make_private(home)
        _check_writable(home)
    except HomeError:
        raise
    except OSError as error:
        reason = error.strerror or str(error)
        raise HomeError(f"cannot use home folder {str(home)!r} (from {source}): {reason}") from None


def _make_private(home: Path) -> None:
    """Refuse another user's folder; take group and world access away from our own."""
    info = home.stat()
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise HomeError(
            f"home folder {str(home)!r} belongs to another user (uid {info.st_uid}); "
            "agentd keeps its socket and history there, so it must be yours"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        private = mode & 0o700
        home.chmod(private)
        log.warning(
            "home folder %s was open to other users (mode %04o); now %04o", home, mode, private
        )


def _check_writable(home: Path) -> None:
    # A real write, not os.access(): access() says yes to root and ignores read-only mounts.
    with tempfile.TemporaryFile(dir=home):
        pass


def models_dir(home: Path) -> Path:
    """Where pulled models are kept: <home>/models."""
    return home / "models"


def socket_path(home: Path) -> Path:
    """The daemon's Unix control socket: <home>/agentd.sock."""
    return home / "agentd.sock"


def log_dir(home: Path) -> Path:
    """Where the rotating log files go: <home>/logs."""
    return home / "logs"


def user_config_path(home: Path) -> Path:
    """The user's config file read when --config is not given: <home>/config.yaml."""
    return home / "config.yaml"


def select_user_config(home: Path, cli_value: str | None = None) -> Path | None:
    """The user config to load: --config if given, else <home>/config.yaml if it exists."""
    if cli_value:
        return Path(cli_value).expanduser()
    default = user_config_path(home)
    return default if default.is_file() else None
