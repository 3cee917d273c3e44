"""The socket protocol on real Unix sockets: framing, validation, peers, stale sockets."""

import asyncio
import json
import logging
import os
import socket
import stat
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import ReplyDone, TextDelta
from agent.ipc import (
    MAX_FRAME,
    MAX_REQUEST_FRAME,
    AlreadyRunning,
    Client,
    DaemonNotRunning,
    Error,
    FrameDecoder,
    FrameTooLong,
    ProtocolError,
    RequestFailed,
    Send,
    Server,
    Status,
    StatusReport,
    event_frame,
    parse_request,
    peer_credentials,
    peer_uid,
)
from agent.ipc import server as server_module
from fakes import home  # noqa: F401  (fixture)


class EchoHandler:
    """A daemon stand-in: answers status, streams a reply to send, records what it got."""

    def __init__(self):
        self.requests = []
        self.lost = 0

    async def handle(self, conn, request):
        self.requests.append(request)
        if isinstance(request, Status):
            conn.send(StatusReport(v=1, id=request.id, status={"pid": os.getpid()}))
        elif isinstance(request, Send):
            if request.text == "crash":
                raise RuntimeError("handler bug")
            for word in request.text.split():
                conn.send(event_frame(request.id, TextDelta(text=word)))
            conn.send(event_frame(request.id, ReplyDone(text=request.text)))

    def connection_lost(self, conn):
        self.lost += 1


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def serving(path, handler=None, **options):
    server = Server(path, handler or EchoHandler(), **options)
    await server.start()
    return server


async def raw_exchange(path, payload: bytes, answers: int) -> list[dict]:
    """Write raw bytes, read `answers` frames back."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    frames = [json.loads(await reader.readline()) for _ in range(answers)]
    writer.close()
    return frames


# -- framing ---------------------------------------------------------------------------------


def test_decoder_splits_lines_and_skips_blank_ones():
    decoder = FrameDecoder()
    assert decoder.feed(b'{"a":1}\n\n  \n{"b"') == [b'{"a":1}']
    assert decoder.feed(b":2}\n") == [b'{"b":2}']


def test_decoder_discards_an_over_long_line_up_to_its_newline():
    decoder = FrameDecoder(limit=10)
    out = decoder.feed(b"x" * 25)
    assert out == []
    out = decoder.feed(b"y" * 5 + b'\n{"ok":1}\n')
    assert isinstance(out[0], FrameTooLong) and out[0].size == 30
    assert out[1:] == [b'{"ok":1}']


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.dictionaries(st.text(), json_values, max_size=5), max_size=8), data=st.data())
def test_decoder_returns_every_frame_whatever_the_chunking(frames, data):
    stream = b"".join(json.dumps(f).encode() + b"\n" for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder, out = FrameDecoder(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        out += decoder.feed(stream[start:end])
    assert [json.loads(line) for line in out] == frames


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=300), data=st.data())
def test_decoder_never_raises_and_ignores_chunking(stream, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    whole = FrameDecoder(limit=16).feed(stream)
    decoder, pieces = FrameDecoder(limit=16), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        pieces += decoder.feed(stream[start:end])
    assert [repr(x) for x in pieces] == [repr(x) for x in whole]
    for item in whole:
        assert isinstance(item, FrameTooLong) or (b"\n" not in item and len(item) <= 16 and item.strip())
    assert len(whole) <= stream.count(b"\n")


@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_parse_request_either_validates_or_names_the_problem(line):
    try:
        parse_request(line)
    except ProtocolError as exc:
        assert str(exc)


# -- the server ------------------------------------------------------------------------------

GARBLED = [
    (b"{", "invalid JSON", None),
    (b"\xff\xfe", "invalid JSON", None),
    (b"[1, 2]", "must be a JSON object, got list", None),
    (b'"text"', "must be a JSON object, got str", None),
    (b"null", "got NoneType", None),
    (b'{"v": 1}', "missing field 'type'", None),
    (b'{"type": "status"}', "missing field 'v'", None),
    (b'{"v": 2, "type": "status"}', "unsupported protocol version 2", None),
    (b'{"v": true, "type": "status"}', "field 'v'", None),
    (b'{"v": 1, "type": "dance"}', "unknown type 'dance'", None),
    (b'{"v": 1, "type": "send", "id": "a1"}', "missing field 'text'", "a1"),
    (b'{"v": 1, "type": "send", "id": "a2", "text": 5}', "field 'text'", "a2"),
    (b'{"v": 1, "type": "send", "id": "", "text": "hi"}', "field 'id'", None),
    (b'{"v": 1, "type": "send", "id": "a3", "text": "hi", "thinking": "yes"}', "field 'thinking'", "a3"),
    (b'{"v": 1, "type": "confirm", "id": "a4", "approve": "yes"}', "field 'approve'", "a4"),
    (b'{"v": 1, "type": "history", "limit": "5"}', "field 'limit'", None),
    (b'{"v": 1, "type": "history", "limit": 0}', "field 'limit'", None),
    (b'{"v": 1, "type": "status", "colour": "red"}', "unknown field 'colour'", None),
    (b'{"v": 1, "type": "cancel"}', "missing field 'id'", None),
]


def test_each_garbled_frame_gets_an_error_and_the_connection_lives(home):
    async def go():
        server = await serving(home / "s.sock")
        try:
            payload = b"".join(line + b"\n" for line, _, _ in GARBLED) + b'{"v":1,"type":"status","id":"ok"}\n'
            frames = await raw_exchange(server.path, payload, len(GARBLED) + 1)
        finally:
            await server.close()
        for (line, problem, rid), frame in zip(GARBLED, frames):
            assert frame["type"] == "error", line
            assert problem in frame["message"], (line, frame)
            assert frame["id"] == rid, line
        assert frames[-1] == {"v": 1, "type": "status", "id": "ok", "status": {"pid": os.getpid()}}

    run(go())


def test_an_over_long_frame_is_discarded_and_the_next_one_served(home):
    async def go():
        server = await serving(home / "s.sock")
        try:
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            for _ in range(MAX_REQUEST_FRAME // MAX_FRAME + 2):  # past the limit without a newline, in pieces
                writer.write(b"a" * MAX_FRAME)
                await writer.drain()
            writer.write(b'\n{"v":1,"type":"status","id":"after"}\n')
            first, second = json.loads(await reader.readline()), json.loads(await reader.readline())
            writer.close()
        finally:
            await server.close()
        assert first["type"] == "error" and f"over the {MAX_REQUEST_FRAME}-byte limit" in first["message"]
        assert second["type"] == "status" and second["id"] == "after"

    run(go())


def test_a_handler_bug_is_an_error_event_not_a_dead_connection(home, caplog):
    async def go():
        server = await serving(home / "s.sock")
        try:
            async with await Client.connect(server.path) as client:
                with pytest.raises(RequestFailed, match="internal error: RuntimeError: handler bug"):
                    async for _ in client.reply("crash"):
                        pass
                assert (await client.status())["pid"] == os.getpid()
        finally:
            await server.close()

    run(go())


def test_client_streams_a_reply_until_reply_done(home):
    async def go():
        server = await serving(home / "s.sock")
        try:
            async with await Client.connect(server.path) as client:
                return [e async for e in client.reply("hello small world")]
        finally:
            await server.close()

    events = run(go())
    assert [e.text for e in events[:-1]] == ["hello", "small", "world"]
    assert events[-1] == ReplyDone(text="hello small world")


def test_two_hundred_clients_at_once(home):
    async def one(path):
        async with await Client.connect(path, timeout=20) as client:
            return (await client.status())["pid"]

    async def go():
        handler = EchoHandler()
        server = await serving(home / "s.sock", handler)
        try:
            pids = await asyncio.gather(*(one(server.path) for _ in range(200)))
        finally:
            await server.close()
        return pids, handler

    pids, handler = run(go())
    assert pids == [os.getpid()] * 200
    assert len(handler.requests) == 200


def test_socket_and_folder_are_private_and_removed_on_close(home):
    async def go():
        folder = home / "run"
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        server = await serving(folder / "s.sock")
        modes = stat.S_IMODE(folder.stat().st_mode), stat.S_IMODE(server.path.stat().st_mode)
        await server.close()
        return modes, server.path.exists()

    (folder_mode, socket_mode), exists = run(go())
    assert (folder_mode, socket_mode) == (0o700, 0o600)
    assert not exists


def test_a_stale_socket_is_replaced(home, caplog):
    path = home / "s.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    dead.close()
    assert stat.S_ISSOCK(path.lstat().st_mode)

    async def go():
        server = await serving(path)
        try:
            async with await Client.connect(path) as client:
                return await client.status()
        finally:
            await server.close()

    with caplog.at_level(logging.WARNING):
        assert run(go())["pid"] == os.getpid()
    assert "stale socket" in caplog.text


def test_a_live_socket_is_not_taken_over(home):
    async def go():
        first = await serving(home / "s.sock")
        try:
            with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)") as caught:
                await serving(home / "s.sock")
            async with await Client.connect(first.path) as client:  # the first one is untouched
                await client.status()
            return caught.value.pid
        finally:
            await first.close()

    assert run(go()) == os.getpid()


def test_a_file_that_is_not_a_socket_is_left_alone(home):
    (home / "s.sock").write_text("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        run(serving(home / "s.sock"))
    assert (home / "s.sock").read_text() == "precious"


def test_a_socket_path_too_long_is_named(home):
    path = home / ("x" * 120) / "s.sock"
    with pytest.raises(ValueError, match="allows 103"):
        run(serving(path))


def test_no_daemon_means_daemon_not_running(home):
    with pytest.raises(DaemonNotRunning, match="agentd start") as caught:
        run(Client.connect(home / "nothing.sock"))
    assert isinstance(caught.value, ConnectionError)


# -- peers -----------------------------------------------------------------------------------


def test_peer_uid_of_a_socketpair_is_ours():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.getuid()
        if hasattr(socket, "SO_PEERCRED"):
            assert peer_credentials(left)[0] == os.getpid()


class FakeDarwinSocket:
    """Answers getsockopt the way macOS does for LOCAL_PEERCRED / LOCAL_PEERPID."""

    def getsockopt(self, level, option, size):
        assert level == 0
        if option == 1:  # LOCAL_PEERCRED: struct xucred
            return struct.pack("=IIh2x16I", 0, 501, 1, 20, *[0] * 15)[:size]
        if option == 2:  # LOCAL_PEERPID
            return struct.pack("=i", 4242)
        raise OSError("unknown option")


def test_peer_uid_decodes_xucred_on_macos():
    assert peer_uid(FakeDarwinSocket(), platform="darwin") == 501
    assert peer_credentials(FakeDarwinSocket(), platform="darwin") == (4242, 501)


def test_peer_uid_refuses_an_unknown_platform():
    with pytest.raises(OSError, match="sunos"):
        peer_uid(FakeDarwinSocket(), platform="sunos5")


def test_a_peer_of_another_uid_is_refused_and_logged(home, monkeypatch, caplog):
    other = os.getuid() + 1000
    monkeypatch.setattr(server_module, "peer_credentials", lambda sock: (99999, other))

    async def go():
        handler = EchoHandler()
        server = await serving(home / "s.sock", handler)
        try:
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            # nothing written first: unread input would make the hang-up a reset, losing the why
            frames = (await reader.read()).splitlines()
            writer.close()
        finally:
            await server.close()
        return [json.loads(f) for f in frames], handler

    with caplog.at_level(logging.WARNING):
        frames, handler = run(go())
    assert len(frames) == 1 and frames[0]["type"] == "error" and "refused" in frames[0]["message"]
    assert handler.requests == []
    assert f"uid {other}" in caplog.text


def test_error_events_round_trip_through_the_client_parser():
    from agent.ipc import parse_event

    line = Error(v=1, id="r1", about="confirm", message="too late").model_dump_json().encode()
    assert parse_event(line) == ("r1", Error(v=1, id="r1", about="confirm", message="too late"))
    rid, event = parse_event(json.dumps(event_frame("r2", TextDelta(text="hi"))).encode())
    assert (rid, event) == ("r2", TextDelta(text="hi"))


def test_a_replys_stats_per_model_call_round_trip_through_the_socket_frames():
    from agent.events import TurnStats
    from agent.ipc import parse_event

    done = ReplyDone(text="84", stats=TurnStats(prompt_tokens=2500, model_calls=2, per_call=((2223, 0), (26, 2255))))
    rid, event = parse_event(json.dumps(event_frame("r3", done)).encode())
    assert (rid, event) == ("r3", done)  # the pairs come back as tuples, equal to what was sent
