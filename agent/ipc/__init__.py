"""Unix-socket IPC between the daemon and its clients (`agentd chat`, `agentd ask`, ...).

Frames are JSON lines with `"v": 1` and a `"type"`; see `agent.ipc.protocol` for the
requests and events, `agent.ipc.server` for the daemon's side and `agent.ipc.client` for
the clients'.
"""

from agent.ipc.client import Client, DaemonNotRunning, RequestFailed, ask, ask_sync, reload_sync, status_sync
from agent.ipc.protocol import (
    MAX_FRAME,
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
    ProtocolError,
    Reload,
    RequestError,
    Send,
    Started,
    Status,
    StatusReport,
    encode,
    event_frame,
    parse_event,
    parse_request,
)
from agent.ipc.server import AlreadyRunning, Connection, Handler, Server, peer_credentials, peer_uid

__all__ = [
    "MAX_FRAME", "MAX_IMAGES", "MAX_REQUEST_FRAME", "VERSION", "AlreadyRunning", "Cancel", "Client", "Confirm", "ConfirmRequest", "Connection",
    "DaemonNotRunning", "Error", "FrameDecoder", "FrameTooLong", "Handler", "History", "HistoryReport",
    "ProtocolError", "Reload", "RequestError", "RequestFailed", "Send", "Server", "Started", "Status", "StatusReport",
    "ask", "ask_sync", "encode", "event_frame", "parse_event", "parse_request", "peer_credentials", "peer_uid",
    "reload_sync", "status_sync",
]
