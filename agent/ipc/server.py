"""The daemon's side of the socket: accept local peers of the same uid, decode, dispatch.

Only a Unix socket, never TCP: its folder is 0700, the socket 0600, and each peer's uid is
checked with the kernel (SO_PEERCRED / LOCAL_PEERCRED) before a byte of it is read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from agent.ipc.protocol import (
    MAX_REQUEST_FRAME,
    VERSION,
    Error,
    FrameDecoder,
    FrameTooLong,
    RequestError,
    encode,
    error_for,
    parse_request,
)

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 103  # sun_path is 104 bytes on macOS (108 on Linux), NUL included
MAX_UNREAD = 8 << 20  # bytes queued for a client that is not reading before it is dropped
_SOL_LOCAL, _LOCAL_PEERCRED, _LOCAL_PEERPID = 0, 0x001, 0x002  # <sys/un.h> on macOS/BSD
_SO_PEERCRED = getattr(socket, "SO_PEERCRED", 17)  # Linux's value, for tests on other systems
_XUCRED_SIZE = 76  # u_int version, uid_t uid, short ngroups (+2 pad), gid_t groups[16]


class AlreadyRunning(RuntimeError):
    """Another daemon already serves this home or socket."""

    def __init__(self, where: Any, pid: int | None = None):
        who = f"pid {pid}" if pid else f"it answers on {where}"
        super().__init__(f"agentd is already running ({who})")
        self.pid = pid


def peer_credentials(sock: Any, platform: str = sys.platform) -> tuple[int | None, int]:
    """(pid or None, uid) of the process at the other end of a connected Unix socket."""
    if platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
        return pid, uid
    if platform == "darwin" or "bsd" in platform:
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_SIZE)
        version, uid = struct.unpack_from("=II", raw)
        if version != 0:
            raise OSError(f"unexpected xucred version {version}")
        try:
            pid = struct.unpack("=i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0]
        except OSError:  # LOCAL_PEERPID is macOS-only
            pid = None
        return pid, uid
    raise OSError(f"cannot check a socket peer's uid on {platform!r}")


def peer_uid(sock: Any, platform: str = sys.platform) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    return peer_credentials(sock, platform)[1]


class Connection:
    """One connected client; `send` never blocks the daemon on a slow reader.

    Frames are written once per event-loop iteration, not one by one: a turn often emits
    several in one step (a text delta and the ReplyDone, or the deltas that piled up while
    the loop was busy), and each write is a syscall that wakes the client's process. On a
    small machine those wake-ups steal CPU from the model, so batching them is what keeps the
    socket's cost per turn down. Nothing waits longer than the current iteration.
    """

    def __init__(self, number: int, writer: asyncio.StreamWriter, pid: int | None):
        self.number = number
        self.pid = pid
        self._writer = writer
        self._pending: list[bytes] = []  # encoded frames for the next flush
        self._pending_size = 0

    def __repr__(self) -> str:
        return f"<client {self.number} pid {self.pid}>"

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def send(self, frame: BaseModel | dict) -> bool:
        """Queue one frame for the client; False if it is gone."""
        if self.closed:
            return False
        data = encode(frame)
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._writer.transport.get_write_buffer_size() + self._pending_size > MAX_UNREAD:
            log.warning("%s has not read %d bytes; dropping it", self, MAX_UNREAD)
            self._pending.clear()
            self._pending_size = 0
            self.close()
            return False
        return True

    def _flush(self) -> None:
        """Write the frames queued since the last flush, as one write."""
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        if not self._writer.is_closing():
            self._writer.write(data)

    def close(self) -> None:
        if not self._writer.is_closing():
            self._flush()  # frames sent just before closing (a last ReplyDone) still go out
            self._writer.close()


class Handler(Protocol):
    """What the server needs from the daemon."""

    async def handle(self, conn: Connection, request: Any) -> None: ...

    def connection_lost(self, conn: Connection) -> None: ...


class Server:
    """A Unix-socket server of JSON-line frames for peers of our own uid."""

    def __init__(self, path: Path, handler: Handler, *, limit: int = MAX_REQUEST_FRAME, uid: int | None = None):
        self.path = Path(path)
        self.handler = handler
        self.limit = limit
        self.uid = os.getuid() if uid is None else uid
        self.connections: set[Connection] = set()
        self._numbers = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Claim the socket path (replacing a stale socket) and listen."""
        check_socket_path(self.path)
        prepare_folder(self.path.parent)
        await claim_socket(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), backlog=512)
        os.chmod(self.path, 0o600)  # the 0700 folder already keeps others out; belt and braces
        self._inode = self.path.stat().st_ino
        log.info("listening on %s", self.path)

    async def close(self) -> None:
        """Stop listening, drop every client, remove our socket file."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            conn.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 2)
        except TimeoutError:
            log.warning("some clients did not close in time")
        self._server = None
        try:
            if self.path.stat().st_ino == self._inode:  # never remove a newer daemon's socket
                self.path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid = peer_credentials(writer.get_extra_info("socket"))
        except OSError as exc:
            log.warning("refused a client whose credentials cannot be read: %s", exc)
            writer.close()
            return
        if uid != self.uid:
            log.warning("refused a client of uid %d (pid %s): only uid %d may use agentd", uid, pid, self.uid)
            writer.write(encode(Error(v=VERSION, message=f"refused: uid {uid} is not the daemon's uid")))
            writer.close()
            return
        conn = Connection(next(self._numbers), writer, pid)
        self.connections.add(conn)
        decoder = FrameDecoder(self.limit)
        try:
            while chunk := await reader.read(1 << 16):
                for line in decoder.feed(chunk):
                    await self._dispatch(conn, line)
        except (ConnectionError, OSError) as exc:
            log.debug("%s went away: %s", conn, exc)
        finally:
            self.connections.discard(conn)
            conn.close()
            try:
                self.handler.connection_lost(conn)
            except Exception:
                log.exception("cleaning up after %s failed", conn)

    async def _dispatch(self, conn: Connection, line: bytes | FrameTooLong) -> None:
        if isinstance(line, FrameTooLong):
            message = (f"frame of {line.size} bytes is over the {self.limit}-byte limit; discarded "
                       "(pictures in a message: send smaller ones)")
            conn.send(Error(v=VERSION, message=message))
            return
        request = None
        try:
            request = parse_request(line)
            await self.handler.handle(conn, request)
        except RequestError as exc:
            conn.send(error_for(exc))
        except Exception as exc:  # a bug in a handler must not take the connection down
            log.exception("handling %r failed", request)
            conn.send(Error(v=VERSION, id=getattr(request, "id", None), about=getattr(request, "type", None),
                            message=f"internal error: {type(exc).__name__}: {exc}"))


def check_socket_path(path: Path) -> None:
    """Refuse a path too long for a Unix socket, naming it."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ValueError(f"socket path {str(path)!r} is {size} bytes; a Unix socket allows {MAX_SOCKET_PATH}")


def prepare_folder(folder: Path) -> None:
    """Make the socket's folder exist, be ours, and be 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"socket folder {str(folder)!r} belongs to uid {info.st_uid}, not {os.getuid()}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        log.warning("socket folder %s was mode %o; making it 0700", folder, stat.S_IMODE(info.st_mode))
        os.chmod(folder, 0o700)


async def claim_socket(path: Path) -> None:
    """Remove a stale socket file; raise AlreadyRunning if a daemon answers on it."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{str(path)!r} exists and is not a socket; not touching it")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2)
    except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
        log.warning("removing stale socket %s (nothing accepts on it)", path)
        path.unlink(missing_ok=True)
        return
    raise AlreadyRunning(path, await _ask_pid(reader, writer))


async def _ask_pid(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int | None:
    """Ask a live daemon its pid, for the error message; None if it will not say."""
    try:
        writer.write(encode({"v": VERSION, "type": "status", "id": "probe"}))
        line = await asyncio.wait_for(reader.readline(), 2)
        pid = json.loads(line).get("status", {}).get("pid")
        return pid if isinstance(pid, int) else None
    except (OSError, TimeoutError, ValueError, AttributeError):
        return None
    finally:
        writer.close()
