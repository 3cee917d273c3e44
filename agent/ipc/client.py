"""The client side: connect to the daemon, send requests, read the events that answer them.

One background reader routes each incoming frame to the request it answers (by id), so a
client can cancel or ask for status while a reply is still streaming.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from agent.events import ReplyDone
from agent.ipc.protocol import (
    MAX_IMAGES,
    MAX_REQUEST_FRAME,
    VERSION,
    Cancel,
    Confirm,
    ConfirmRequest,
    Error,
    FrameDecoder,
    FrameTooLong,
    History,
    HistoryReport,
    Notice,
    OpenQuestion,
    ProtocolError,
    QuestionSettled,
    Reload,
    Send,
    Status,
    StatusReport,
    encode,
    parse_event,
)

log = logging.getLogger(__name__)

CLIENT_FRAME_LIMIT = 64 << 20  # a long history can be a big frame; the daemon is trusted
_CLOSED = object()


class DaemonNotRunning(ConnectionError):
    """Nothing listens on the daemon's socket."""

    def __init__(self, path: Any):
        super().__init__(f"agentd is not running; start it with `agentd start` or `agentd run` (no daemon at {path})")
        self.path = path


class RequestFailed(RuntimeError):
    """The daemon answered a request with an error event."""


class Client:
    """A connection to the daemon."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._waiting: dict[str, asyncio.Queue] = {}
        self.notices: list[Notice | OpenQuestion | QuestionSettled] = []  # unasked news, for the front end to show
        self.questions: dict[str, OpenQuestion] = {}  # asked aloud and not settled yet; `answer` takes their id
        self._ids = itertools.count(1)
        self._reading = asyncio.create_task(self._read_loop(), name="ipc-client-reader")

    @classmethod
    async def connect(cls, path: Path | str, timeout: float = 5.0) -> "Client":
        """Connect, or raise DaemonNotRunning."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
            raise DaemonNotRunning(path) from None
        return cls(reader, writer)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._reading.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    def new_id(self) -> str:
        return f"r{next(self._ids)}"

    async def reply(
        self, text: str, *, conversation_id: str | None = None, thinking: bool | None = None,
        request_id: str | None = None, explain: bool = False, images: list[bytes] = (),
    ) -> AsyncIterator[Any]:
        """Send text (and pictures: image files' bytes, checked and shrunk by the daemon); yield
        step events, ConfirmRequests and non-fatal Errors until ReplyDone."""
        rid = request_id or self.new_id()
        if len(images) > MAX_IMAGES:
            raise RequestFailed(f"{len(images)} pictures in one message; the daemon takes up to {MAX_IMAGES}")
        send = Send(v=VERSION, type="send", id=rid, text=text, conversation_id=conversation_id, thinking=thinking,
                    explain=explain, images=[base64.b64encode(data).decode("ascii") for data in images])
        if images and len(encode(send)) > MAX_REQUEST_FRAME:
            raise RequestFailed(f"the pictures are {sum(map(len, images)):,} bytes together, more than one message "
                                f"carries (about {MAX_REQUEST_FRAME * 3 // 4 // 1_000_000} MB); send smaller ones")
        async with self._expecting(rid) as queue:
            await self._write(send)
            while True:
                event = await self._next(queue)
                if isinstance(event, Error) and event.about in (None, "send"):
                    raise RequestFailed(event.message)
                yield event
                if isinstance(event, ReplyDone):
                    return

    async def cancel(self, request_id: str) -> None:
        """Ask the daemon to stop a running or queued request of this connection."""
        await self._write(Cancel(v=VERSION, type="cancel", id=request_id))

    async def stop(self, request_id: str, timeout: float = 2.0) -> bool:
        """Cancel a request nobody is reading any more; True if it was still queued or running."""
        async with self._expecting(request_id) as queue:
            await self.cancel(request_id)
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        event = await self._next(queue)
                        if isinstance(event, (ReplyDone, Error)):
                            return isinstance(event, ReplyDone)
            except TimeoutError:
                return False

    async def answer(self, request_id: str, approve: bool) -> None:
        """Answer a ConfirmRequest, or an open question by its id (an Error frame says if too late)."""
        await self._write(Confirm(v=VERSION, type="confirm", id=request_id, approve=approve))

    async def status(self) -> dict:
        """The daemon's status payload."""
        return (await self._ask(lambda rid: Status(v=VERSION, type="status", id=rid), StatusReport)).status

    async def reload(self) -> dict:
        """Reload the daemon's configuration; its status afterwards."""
        return (await self._ask(lambda rid: Reload(v=VERSION, type="reload", id=rid), StatusReport)).status

    async def history(self, conversation_id: str | None = None, limit: int = 20) -> HistoryReport:
        """Messages of a conversation (the latest one if no id)."""
        return await self._ask(
            lambda rid: History(v=VERSION, type="history", id=rid, conversation_id=conversation_id, limit=limit),
            HistoryReport,
        )

    async def _ask(self, make: Callable[[str], Any], answer: type) -> Any:
        rid = self.new_id()
        async with self._expecting(rid) as queue:
            await self._write(make(rid))
            while True:
                event = await self._next(queue)
                if isinstance(event, Error):
                    raise RequestFailed(event.message)
                if isinstance(event, answer):
                    return event

    def _expecting(self, rid: str) -> "_Waiter":
        if rid in self._waiting:
            raise ValueError(f"request id {rid!r} is already in use")
        return _Waiter(self, rid)

    async def _write(self, frame: Any) -> None:
        self._writer.write(encode(frame))
        await self._writer.drain()

    async def _next(self, queue: asyncio.Queue) -> Any:
        event = await queue.get()
        if event is _CLOSED:
            raise ConnectionResetError("the daemon closed the connection")
        return event

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(CLIENT_FRAME_LIMIT)
        try:
            while chunk := await self._reader.read(1 << 16):
                for line in decoder.feed(chunk):
                    self._route(line)
        except (ConnectionError, OSError) as exc:
            log.debug("connection to the daemon lost: %s", exc)
        finally:
            for queue in self._waiting.values():
                queue.put_nowait(_CLOSED)

    def _route(self, line: bytes | FrameTooLong) -> None:
        if isinstance(line, FrameTooLong):
            log.warning("skipped a %d-byte frame from the daemon", line.size)
            return
        try:
            rid, event = parse_event(line)
        except ProtocolError as exc:
            log.warning("skipped a frame the client does not understand: %s", exc)
            return
        if isinstance(event, (Notice, OpenQuestion, QuestionSettled)):  # unasked news, kept for the front end
            if isinstance(event, OpenQuestion):
                self.questions[event.id] = event
            elif isinstance(event, QuestionSettled):
                self.questions.pop(event.id, None)
            self.notices.append(event)
            return
        if rid is None:  # a complaint not tied to a request: everyone waiting should hear it
            targets = list(self._waiting.values())
        else:
            targets = [self._waiting[rid]] if rid in self._waiting else []
        for queue in targets:
            queue.put_nowait(event)


class _Waiter:
    """Registers a queue for one request id while a caller waits on it."""

    def __init__(self, client: Client, rid: str):
        self.client, self.rid = client, rid

    async def __aenter__(self) -> asyncio.Queue:
        self.client._waiting[self.rid] = queue = asyncio.Queue()
        if self.client._reading.done():  # the daemon is already gone: fail, do not hang
            queue.put_nowait(_CLOSED)
        return queue

    async def __aexit__(self, *exc: Any) -> None:
        self.client._waiting.pop(self.rid, None)


OnConfirm = Callable[[ConfirmRequest], bool | Awaitable[bool]]


async def ask(
    path: Path | str, text: str, *, conversation_id: str | None = None, thinking: bool | None = None,
    on_event: Callable[[Any], None] | None = None, on_confirm: OnConfirm | None = None, explain: bool = False,
    images: list[bytes] = (),
) -> ReplyDone:
    """Send one message and wait for the reply; confirmations are denied unless on_confirm approves."""
    async with await Client.connect(path) as client:
        rid = client.new_id()
        async for event in client.reply(text, conversation_id=conversation_id, thinking=thinking, request_id=rid,
                                        explain=explain, images=images):
            if isinstance(event, ConfirmRequest):
                approve = on_confirm(event) if on_confirm else False
                if asyncio.iscoroutine(approve):
                    approve = await approve
                await client.answer(rid, bool(approve))
            elif on_event:
                on_event(event)
            if isinstance(event, ReplyDone):
                return event
    raise ConnectionResetError("the daemon closed the connection before the reply was done")


def ask_sync(path: Path | str, text: str, **options: Any) -> ReplyDone:
    """`ask` for synchronous callers (the CLI)."""
    return asyncio.run(ask(path, text, **options))


def status_sync(path: Path | str, timeout: float = 5.0) -> dict:
    """The daemon's status, for synchronous callers; DaemonNotRunning if there is none."""

    async def go() -> dict:
        async with await Client.connect(path, timeout) as client:
            return await asyncio.wait_for(client.status(), timeout)

    return asyncio.run(go())


def reload_sync(path: Path | str, timeout: float = 30.0) -> dict:
    """Ask the daemon to reload its configuration; its status afterwards."""

    async def go() -> dict:
        async with await Client.connect(path) as client:
            return await asyncio.wait_for(client.reload(), timeout)

    return asyncio.run(go())
