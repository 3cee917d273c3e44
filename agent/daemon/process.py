"""What a long-running process needs around its work: a home lock, logs, supervised tasks.

The lock is an `fcntl.flock` on `agentd.pid` in the home folder: the kernel drops it when the
process dies, even by kill -9, so a crash never leaves a false "already running".
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable

from agent.config.paths import log_dir
from agent.ipc.server import AlreadyRunning

log = logging.getLogger(__name__)

PID_FILE = "agentd.pid"
LOG_FILE = "agentd.log"
_OUR_HANDLER = "_agentd_handler"  # marks handlers setup_logging added, so a second call replaces them


class HomeLock:
    """An exclusive lock on a home folder, holding the owner's pid."""

    def __init__(self, home: Path):
        self.path = Path(home) / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning with the holder's pid."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; the file stays (unlinking it would let two daemons race for it)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "HomeLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_pid(home: Path) -> int | None:
    """The pid of the daemon holding this home's lock, or None if none does."""
    try:
        fd = os.open(Path(home) / PID_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or -1  # held, but the pid is not written yet
    else:
        return None  # we got it, so nobody holds it (a kill -9 leaves only the file)
    finally:
        os.close(fd)


def stop_daemon(home: Path, timeout: float = 15.0, *, kill_after: float | None = 30.0) -> int | None:
    """SIGTERM the daemon of this home and wait for it to go; its pid, or None if none ran.

    A model step on a slow CPU cannot be interrupted (a 64-token prefill step takes seconds
    here), so after `kill_after` more seconds it is SIGKILLed: stop must end with no daemon,
    or the next start finds one that is going away. Nothing is lost: the store is SQLite in
    WAL mode and every file agentd writes is renamed into place whole. `kill_after=None`
    raises TimeoutError instead."""
    pid = running_pid(home)
    if pid is None or pid < 0:
        return None
    os.kill(pid, signal.SIGTERM)
    if _wait_gone(home, timeout):
        return pid
    if kill_after is None:
        raise TimeoutError(f"agentd (pid {pid}) did not stop within {timeout:g} s")
    log.warning("agentd (pid %d) did not stop within %g s; killing it", pid, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not _wait_gone(home, kill_after):
        raise TimeoutError(f"agentd (pid {pid}) did not stop within {timeout + kill_after:g} s, even killed")
    return pid


def _wait_gone(home: Path, timeout: float) -> bool:
    """Wait until nobody holds the home's lock; False if someone still does after timeout."""
    deadline = time.monotonic() + timeout
    while running_pid(home) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class StartError(RuntimeError):
    """The daemon ended while starting; the message is its own one-line reason."""


START_ERR_FILE = "start.err"  # the starting daemon's stderr, read back when it dies early


def start_in_background(command: list[str], home: Path, socket_path: Path, timeout: float = 600.0,
                        waiting: Callable[[], None] | None = None) -> int:
    """Start `command` (an `agentd run` line) detached from this terminal; its pid once it answers.

    The daemon answers once its model is loaded (converting the demo model first on a first
    run), so the wait is long. If it dies first, StartError carries the reason it printed."""
    from agent.ipc.client import status_sync  # the client is only needed here

    folder = log_dir(Path(home))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    err_path = folder / START_ERR_FILE
    with open(err_path, "wb") as err:  # its logs go to the log file; this keeps its last words
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    # reap it if it ends while this process still runs (no zombie, no "still running" warning)
    threading.Thread(target=proc.wait, name="agentd-reaper", daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return status_sync(socket_path, timeout=2)["pid"]
        except ConnectionError:
            pass
        if proc.poll() is not None:
            raise StartError(f"agentd exited while starting: {last_words(err_path, proc.returncode)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"agentd (pid {proc.pid}) did not answer within {timeout:g} s; see {folder / LOG_FILE}")
        if waiting is not None:
            waiting()  # e.g. say what the daemon is doing meanwhile
        time.sleep(0.1)


def last_words(err_path: Path, code: int) -> str:
    """The one line that says why a daemon died: its `agentd: ...` line, else its last line."""
    try:
        lines = [line.strip() for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    reasons = [line for line in lines if line.startswith("agentd: ")]
    if reasons:
        return reasons[-1].removeprefix("agentd: ")
    if lines:  # a crash: the exception line ends a traceback
        return f"{lines[-1]} (exit code {code}; the whole output is in {err_path})"
    return f"exit code {code}, no output"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def setup_logging(
    home: Path, *, level: str = "info", max_bytes: int = 5_000_000, backups: int = 3, console: bool = True
) -> Path:
    """Log to stderr and a rotating file in the home's logs folder; return the file's path."""
    folder = log_dir(Path(home))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOG_FILE
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OUR_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()
    file_handler = _LogFile(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [file_handler]
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handlers.append(stream)
    for handler in handlers:
        setattr(handler, _OUR_HANDLER, True)
        root.addHandler(handler)
    root.setLevel(level.upper())
    return path


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file; a line it cannot write (a full disk) is dropped without a word, rather
    than logging's default of a traceback on stderr for every line. The console still has it."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[object]],
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
    healthy_after: float = 60.0,
    max_failures: int = 5,
    on_give_up: Callable[[str], object] | None = None,
    on_state: Callable[[str], object] | None = None,
) -> None:
    """Run a service until it returns; on an error log it, wait (doubling, capped) and restart.

    After `max_failures` failures in a row (none running `healthy_after` seconds) it gives up:
    a fault that every restart meets again (a damaged file, say) would otherwise fill the log
    with the same traceback forever while the person hears nothing. `on_give_up(reason)`
    says why, for `agentd status`; `on_state(text)` hears "running" and each
    "restarting in N s after REASON", so status never calls a waiting service running."""
    loop = asyncio.get_running_loop()
    delay, failures = first_delay, 0
    while True:
        started = loop.time()
        if on_state is not None:
            on_state("running")
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if loop.time() - started >= healthy_after:
                delay, failures = first_delay, 0  # it ran well for a while: a new failure, not a loop
            failures += 1
            reason = f"{type(exc).__name__}: {exc}"
            if failures >= max_failures:
                log.error("service %s failed %d times in a row (%s); not restarting it", name, failures, reason)
                if on_give_up is not None:
                    on_give_up(reason)
                return
            if failures == 1:  # the traceback once; the repeats of the same fault in one line each
                log.exception("service %s failed; restarting in %.1f s", name, delay)
            else:
                log.error("service %s failed again (%s); restarting in %.1f s", name, reason, delay)
            if on_state is not None:
                on_state(f"restarting in {delay:g} s after {reason}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        log.info("service %s finished", name)
        return
